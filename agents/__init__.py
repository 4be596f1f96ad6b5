"""Learning algorithms: QAC (deep, sampled actions, learned Q), ExactPG (tabular, exact gradients), Supervised."""

from agents.exact_pg import ExactPG as ExactPG
from agents.supervised import Supervised as Supervised
