"""Learning algorithms: QAC (deep, sampled actions, learned Q), TabularPG (tabular, exact or sampled gradients) and its
exact case ExactPG, Supervised."""

from agents.exact_pg import ExactPG as ExactPG
from agents.initial_policy import adversarial_start as adversarial_start
from agents.qac import QAC as QAC
from agents.supervised import Supervised as Supervised
from agents.tabular_pg import TabularPG as TabularPG
