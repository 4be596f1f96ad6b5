"""Run one configuration: validate it, resolve its hyperparameters, run it in a temporary folder, move it into place."""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

from envs.make import UnknownEnvError, ensure_registered, env_family
from experiments.config import RunConfig
from experiments.errors import UsageError
from experiments.hyperparams import load_hyperparams
from experiments.results import CONFIG_FILE, SUMMARY_FILE, write_json, write_yaml

Runner = Callable[[RunConfig, dict[str, Any], Path], dict[str, Any]]


@dataclass(frozen=True)
class AlgoSpec:
    """An algorithm as the command line knows it: what runs it and which policy parameterizations it accepts."""

    runner: Callable[[], Runner]
    policies: tuple[str, ...]


def _sb3_runner() -> Runner:
    from experiments.sb3_run import run_sb3

    return run_sb3


def _exact_runner() -> Runner:
    from experiments.exact_run import run_exact

    return run_exact


def _supervised_runner() -> Runner:
    from experiments.supervised_run import run_supervised

    return run_supervised


ALGOS: dict[str, AlgoSpec] = {
    "ppo": AlgoSpec(_sb3_runner, ("softmax", "escort")),
    "a2c": AlgoSpec(_sb3_runner, ("softmax", "escort")),
    "qac": AlgoSpec(_sb3_runner, ("softmax", "escort", "neurd")),
    "exact": AlgoSpec(_exact_runner, ("softmax", "escort", "neurd", "gnpg")),
    "supervised": AlgoSpec(_supervised_runner, ("softmax", "escort")),
}


def validate(config: RunConfig) -> gym.Env:
    """Check a configuration before anything is written; every problem is a one-line ``UsageError``.

    :param config: the run
    :return: an instance of the env (closed by the caller), made with the run's env kwargs
    """
    if config.algo not in ALGOS:
        raise UsageError(f"unknown algorithm '{config.algo}': choose one of {', '.join(ALGOS)}")
    accepted = ALGOS[config.algo].policies
    if config.policy not in accepted:
        raise UsageError(
            f"--policy {config.policy} does not work with --algo {config.algo}: choose one of {', '.join(accepted)}"
        )
    if not (math.isfinite(config.p) and config.p > 0):
        raise UsageError(f"--p must be a finite number > 0 (got {config.p}); the escort power is usually 2")
    for name in ("n_timesteps", "n_envs"):
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be > 0 (got {value})")
    if config.eval_episodes <= 0:
        raise UsageError(f"--eval-episodes must be > 0 (got {config.eval_episodes})")
    if config.num_threads == 0 or config.num_threads < -1:
        raise UsageError(f"--num-threads must be >= 1, or -1 for torch's default (got {config.num_threads})")
    check_writable(Path(config.log_folder))
    try:
        ensure_registered(config.env)
    except UnknownEnvError as err:
        raise UsageError(str(err)) from None
    try:
        env = gym.make(config.env, **config.env_kwargs)
    except (TypeError, ValueError, gym.error.Error) as err:
        raise UsageError(f"cannot make {config.env} with --env-kwargs {config.env_kwargs}: {err}") from None
    if not isinstance(env.action_space, gym.spaces.Discrete):
        env.close()
        raise UsageError(
            f"{config.env} has a {type(env.action_space).__name__} action space; {config.policy} policies need a "
            "Discrete one: "
            "choose an env with discrete actions"
        )
    return env


def check_writable(folder: Path) -> None:
    """Fail early, without creating anything, when runs cannot be written under ``folder``.

    :param folder: the log folder (need not exist yet)
    """
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"cannot write runs under --log-folder {folder}: {existing} is a file; choose another folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise UsageError(f"cannot write runs under --log-folder {folder}: {err.strerror}; choose a writable folder") from None


def resolve(config: RunConfig) -> dict[str, Any]:
    """:param config: the run
    :return: its hyperparameters, with ``n_timesteps``/``n_envs`` from the command line where given"""
    hp = load_hyperparams(config.algo, config.env, env_family(config.env), config.hyperparams)
    if config.n_timesteps is not None:
        hp["n_timesteps"] = config.n_timesteps
    if config.n_envs is not None:
        hp["n_envs"] = config.n_envs
    if "n_timesteps" not in hp:
        raise UsageError(f"no n_timesteps for {config.env} in hyperparams/{config.algo}.yml: pass -n N")
    hp["n_timesteps"] = int(hp["n_timesteps"])
    return hp


def next_run_dir(config: RunConfig) -> Path:
    """:param config: the run
    :return: ``<log_folder>/<algo>/<env>_<policy>_s<seed>``, with ``_2``, ``_3``... when that exists already
        (with ``--resume``, an interrupted run's folder is reused)"""
    base = Path(config.log_folder) / config.algo / config.run_name
    candidate, k = base, 1
    while candidate.exists() and not (config.resume and _interrupted(candidate)):
        k += 1
        candidate = base.with_name(f"{base.name}_{k}")
    return candidate


def _interrupted(run_dir: Path) -> bool:
    summary = run_dir / SUMMARY_FILE
    return summary.exists() and bool(json.loads(summary.read_text()).get("interrupted"))


def run(config: RunConfig, run_dir: Path | None = None) -> dict[str, Any]:
    """Validate, run in a temporary folder, then move the finished run folder into place.

    The folder holds ``config.yml`` (the config and the resolved hyperparameters), ``summary.json`` and what the
    runner wrote (model, metrics.csv, monitor CSV, TensorBoard). A run that fails leaves nothing behind.

    :param config: the run
    :param run_dir: where the finished run goes (default: ``next_run_dir(config)``)
    :return: the summary, with ``run_dir``
    """
    validate(config).close()
    if config.num_threads > 0:
        import torch

        torch.set_num_threads(config.num_threads)
    hp = resolve(config)
    final = Path(run_dir) if run_dir is not None else next_run_dir(config)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        write_yaml(tmp / CONFIG_FILE, {**config.to_dict(), "resolved_hyperparams": hp, "provenance": provenance()})
        summary = ALGOS[config.algo].runner()(config, hp, tmp)
        write_json(tmp / SUMMARY_FILE, summary)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**summary, "run_dir": str(final)}


def provenance() -> dict[str, str]:
    """:return: the git commit of the code (when in a git checkout) and the versions that produced a run"""
    import stable_baselines3
    import torch

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "git_commit": commit or "unknown",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "gymnasium": gym.__version__,
    }
