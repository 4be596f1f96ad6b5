"""Run one configuration or a grid of them, store the results, and report on them."""

from experiments.config import RunConfig
from experiments.errors import UsageError

__all__ = ["RunConfig", "UsageError"]
