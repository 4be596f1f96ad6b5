"""Learning algorithms: QAC (deep, sampled actions, learned Q) and ExactPG (tabular, exact gradients)."""

from agents.exact_pg import ExactPG as ExactPG
from agents.qac import QAC as QAC
from agents.supervised import Supervised as Supervised
