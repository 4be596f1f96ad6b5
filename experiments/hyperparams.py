"""Hyperparameters as data: ``hyperparams/<algo>.yml`` (or a ``-conf`` file) in rl-zoo3's layout, resolved for one run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from experiments.config import load_yaml
from experiments.errors import UsageError
from experiments.zoo import normalize_kwargs, policy_kwargs_data

HYPERPARAMS_DIR = Path(__file__).resolve().parent.parent / "hyperparams"


def hyperparams_path(algo: str) -> Path:
    """:param algo: algorithm name
    :return: the file its hyperparameters come from, ``hyperparams/<algo>.yml`` (it need not exist: then every value
        comes from the command line and the runner's defaults)"""
    return HYPERPARAMS_DIR / f"{algo}.yml"


def load_hyperparams(
    algo: str, env_id: str, family: str, overrides: dict[str, Any] | None = None, path: str | Path | None = None
) -> dict[str, Any]:
    """Merge the blocks of a hyperparameter file: ``default`` < family (``atari``, ``minigrid``) < env id < overrides.

    A file in rl-zoo3's layout (one block per env id, an ``atari`` block) resolves as rl-zoo3 resolves it: the env id's
    block, else the family's; here an env id's block also inherits the keys of its family's and of ``default`` that
    it does not set. rl-zoo3's ``policy_kwargs`` and ``normalize`` strings (``"dict(net_arch=[64, 64])"``) are parsed
    into mappings block by block (``experiments.zoo``), so they merge key by key with the others.

    :param algo: algorithm name (file stem)
    :param env_id: environment id (a block of that name wins over the family block)
    :param family: the env's family, as ``envs.make.env_family`` names it
    :param overrides: ``--hyperparams`` values
    :param path: a file given by ``-conf/--conf-file``, which must exist and have a block for the env (default:
        ``hyperparams/<algo>.yml``, which need not exist)
    :return: the resolved mapping (nested ``policy_kwargs`` merged key by key)
    """
    blocks = read_blocks(Path(path)) if path is not None else _builtin_blocks(algo)
    chosen = [blocks.get("default"), blocks.get(family), blocks.get(_env_name(env_id))]
    if path is not None and not any(block is not None for block in chosen):
        raise UsageError(f"--conf-file {path} has no block for {env_id} (nor {family}, nor default): add one")
    resolved: dict[str, Any] = {}
    for block in (*chosen, overrides):
        for key, value in translate_block(block or {}).items():
            if isinstance(value, dict) and isinstance(resolved.get(key), dict):
                resolved[key] = {**resolved[key], **value}
            else:
                resolved[key] = value
    return resolved


def _env_name(env_id: str) -> str:
    """:param env_id: ``id`` or ``module:id``
    :return: the id, whose block the files name"""
    return env_id.rpartition(":")[2]


def _builtin_blocks(algo: str) -> dict[str, Any]:
    path = hyperparams_path(algo)
    return load_yaml(path.read_text()) or {} if path.exists() else {}


def read_blocks(path: Path) -> dict[str, Any]:
    """:param path: a YAML hyperparameter file
    :return: its blocks (block name -> mapping)"""
    try:
        blocks = load_yaml(path.read_text())
    except OSError as err:
        raise UsageError(f"--conf-file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise UsageError(f"--conf-file {path} is not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(blocks, dict) or not all(isinstance(b, dict) or b is None for b in blocks.values()):
        raise UsageError(f"--conf-file {path} is not a mapping of blocks (env id -> hyperparameters), as rl-zoo3's files are")
    return blocks


def translate_block(block: dict[str, Any]) -> dict[str, Any]:
    """:param block: one block of a file, or the ``--hyperparams`` overrides
    :return: the same with rl-zoo3's strings parsed: ``policy_kwargs`` and ``normalize`` given as ``"dict(...)"``"""
    translated = dict(block)
    if isinstance(translated.get("policy_kwargs"), str):
        translated["policy_kwargs"] = policy_kwargs_data(translated["policy_kwargs"])
    if isinstance(translated.get("normalize"), str):
        translated["normalize"] = normalize_kwargs(translated["normalize"])
    return translated


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
