"""Learning algorithms: QAC (deep, sampled actions, learned Q), ExactPG (tabular, exact gradients), Supervised."""

from agents.supervised import Supervised as Supervised
