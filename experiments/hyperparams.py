"""Hyperparameters as data: ``hyperparams/<algo>.yml`` in rl-zoo3's format, resolved for one run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments.config import load_yaml
from experiments.errors import UsageError

HYPERPARAMS_DIR = Path(__file__).resolve().parent.parent / "hyperparams"


def hyperparams_path(algo: str) -> Path:
    """:param algo: algorithm name
    :return: the file its hyperparameters come from, ``hyperparams/<algo>.yml`` (it need not exist: then every value
        comes from the command line and the runner's defaults)"""
    return HYPERPARAMS_DIR / f"{algo}.yml"


def load_hyperparams(algo: str, env_id: str, family: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge the blocks of ``hyperparams/<algo>.yml``: ``default`` < family (``atari``, ``minigrid``) < env id < overrides.

    :param algo: algorithm name (file stem)
    :param env_id: environment id (a block of that name wins over the family block)
    :param family: the env's family, as ``envs.make.env_family`` names it
    :param overrides: ``--hyperparams`` values
    :return: the resolved mapping (nested ``policy_kwargs`` merged key by key)
    """
    path = hyperparams_path(algo)
    blocks = load_yaml(path.read_text()) if path.exists() else {}
    resolved: dict[str, Any] = {}
    for block in (blocks.get("default"), blocks.get(family), blocks.get(env_id), overrides):
        for key, value in (block or {}).items():
            if isinstance(value, dict) and isinstance(resolved.get(key), dict):
                resolved[key] = {**resolved[key], **value}
            else:
                resolved[key] = value
    return resolved


def schedule(value: Any) -> float | Callable[[float], float]:
    """Turn rl-zoo3's ``lin_<x>`` strings into a linear schedule from x to 0; numbers pass through.

    :param value: a number or ``"lin_<x>"``
    :return: a float or a function of SB3's remaining progress (1 -> 0)
    """
    if isinstance(value, str) and value.startswith("lin_"):
        try:
            start = float(value[4:])
        except ValueError:
            raise UsageError(f"schedule '{value}' is not lin_<number> (e.g. lin_2.5e-4)") from None
        return lambda progress_remaining: progress_remaining * start
    if isinstance(value, str):
        raise UsageError(f"'{value}' is neither a number nor a schedule lin_<number>")
    return value
