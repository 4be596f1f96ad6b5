"""Learning algorithms: QAC (deep, sampled actions, learned Q) and ExactPG (tabular, exact gradients)."""

from agents.exact_pg import ExactPG as ExactPG
