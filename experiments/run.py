"""Run one configuration: validate it, resolve its hyperparameters, run it in a temporary folder with its provenance, move
it into place."""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

from envs.make import UnknownEnvError, ensure_registered, env_family
from experiments.config import TABULAR_ALGOS, RunConfig
from experiments.errors import UsageError
from experiments.hyperparams import HYPERPARAMS_DIR, hyperparams_path, load_hyperparams
from experiments.reference import reference_metrics
from experiments.results import CONFIG_FILE, SUMMARY_FILE, last_values, read_metrics, write_json, write_yaml
from experiments.zoo import import_gym_packages

Runner = Callable[[RunConfig, dict[str, Any], Path], dict[str, Any]]
#: Builds what a run would build (envs, model or agent) from its config and resolved hyperparameters, and drops it:
#: every bad hyperparameter raises its ``UsageError`` before anything runs.
Checker = Callable[[RunConfig, dict[str, Any]], None]


@dataclass(frozen=True)
class AlgoSpec:
    """An algorithm as the command line knows it: what runs it, what checks a run of it before it starts, and which
    policy parameterizations it accepts."""

    runner: Callable[[], Runner]
    checker: Callable[[], Checker]
    policies: tuple[str, ...]


def _sb3_runner() -> Runner:
    from experiments.sb3_run import run_sb3

    return run_sb3


def _sb3_checker() -> Checker:
    from experiments.sb3_run import check_sb3

    return check_sb3


def _exact_runner() -> Runner:
    from experiments.exact_run import run_exact

    return run_exact


def _exact_checker() -> Checker:
    from experiments.exact_run import check_exact

    return check_exact


def _supervised_runner() -> Runner:
    from experiments.supervised_run import run_supervised

    return run_supervised


def _supervised_checker() -> Checker:
    from experiments.supervised_run import check_supervised

    return check_supervised


ALGOS: dict[str, AlgoSpec] = {
    "ppo": AlgoSpec(_sb3_runner, _sb3_checker, ("softmax", "escort")),
    "a2c": AlgoSpec(_sb3_runner, _sb3_checker, ("softmax", "escort")),
    "qac": AlgoSpec(_sb3_runner, _sb3_checker, ("softmax", "escort", "neurd")),
    "exact": AlgoSpec(_exact_runner, _exact_checker, ("softmax", "escort", "neurd", "gnpg")),
    "tabular": AlgoSpec(_exact_runner, _exact_checker, ("softmax", "escort", "neurd", "gnpg")),
    "supervised": AlgoSpec(_supervised_runner, _supervised_checker, ("softmax", "escort")),
}


#: The initial policies (``--init``) of each algorithm (others: uniform only): an adversarial start needs a transition
#: model; the tabular algorithms also have ``agents.ExactPG``'s random one.
INITS: dict[str, tuple[str, ...]] = {
    "ppo": ("uniform", "adversarial"),
    "a2c": ("uniform", "adversarial"),
    "qac": ("uniform", "adversarial"),
    "exact": ("uniform", "random", "adversarial"),
    "tabular": ("uniform", "random", "adversarial"),
    "supervised": ("uniform",),
}


def validate(config: RunConfig) -> gym.Env:
    """Check a configuration before anything is written; every problem is a one-line ``UsageError``.

    :param config: the run
    :return: an instance of the env (closed by the caller), made with the run's env kwargs
    """
    if config.algo not in ALGOS:
        raise UsageError(f"unknown algorithm '{config.algo}': choose one of {', '.join(ALGOS)}")
    import_gym_packages(config.gym_packages)
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
    if config.n_eval_envs <= 0:
        raise UsageError(f"--n-eval-envs must be > 0 (got {config.n_eval_envs})")
    if config.conf_file is not None and not Path(config.conf_file).is_file():
        raise UsageError(f"--conf-file {config.conf_file}: no such file")
    if config.seed < 0:
        raise UsageError(f"--seed must be >= 0 (got {config.seed}): env seeds are derived from it by SeedSequence")
    if config.num_threads == 0 or config.num_threads < -1:
        raise UsageError(f"--num-threads must be >= 1, or -1 for torch's default (got {config.num_threads})")
    check_init_flags(config)
    check_writable(Path(config.log_folder))
    try:
        ensure_registered(config.env)
    except UnknownEnvError as err:
        raise UsageError(str(err)) from None
    if config.eval_env_kwargs is not None:
        make_env(config.env, config.eval_env_kwargs, "--eval-env-kwargs").close()
    env = make_env(config.env, config.env_kwargs, "--env-kwargs")
    if not isinstance(env.action_space, gym.spaces.Discrete):
        env.close()
        raise UsageError(
            f"{config.env} has a {type(env.action_space).__name__} action space; {config.policy} policies need a "
            "Discrete one: "
            "choose an env with discrete actions"
        )
    if config.init == "adversarial":
        try:
            check_adversarial_env(config, env)
        except UsageError:
            env.close()
            raise
    return env


def make_env(env_id: str, env_kwargs: dict[str, Any], flag: str) -> gym.Env:
    """:param env_id: a registered id
    :param env_kwargs: its keyword arguments
    :param flag: the flag that gave them, for the error message
    :return: the env"""
    try:
        return gym.make(env_id, **env_kwargs)
    except (TypeError, ValueError, gym.error.Error) as err:
        raise UsageError(f"cannot make {env_id} with {flag} {env_kwargs}: {err}") from None


def check_init_flags(config: RunConfig) -> None:
    """``--init`` must be one the algorithm has; ``--pi0`` goes with an adversarial start, in ``(0, 0.3]``.

    :param config: the run
    """
    inits = INITS.get(config.algo, ("uniform",))
    if config.init is not None and config.init not in inits:
        raise UsageError(f"--init {config.init} does not work with --algo {config.algo}: choose one of {', '.join(inits)}")
    if config.pi0 is None:
        return
    # the tabular algorithms start adversarially by default (their hyperparameter files), the others uniformly
    adversarial = config.init == "adversarial" or (config.init is None and config.algo in TABULAR_ALGOS)
    if not adversarial:
        raise UsageError(f"--pi0 sets the adversarial start: add --init adversarial, or leave out --pi0 {config.pi0:g}")
    from agents.initial_policy import PI0_MAX

    if not (math.isfinite(config.pi0) and 0.0 < config.pi0 <= PI0_MAX):
        raise UsageError(f"--pi0 must be in (0, {PI0_MAX:g}] (got {config.pi0:g}); 0.01 is usual")


def check_adversarial_env(config: RunConfig, env: gym.Env) -> None:
    """The adversarial start needs the env's transition model and one observation per model state, and ``pi0``
    below the mass it leaves to the sub-optimal action.

    :param config: the run, with ``--init adversarial``
    :param env: its env
    """
    base = env.unwrapped
    if not (callable(getattr(base, "transition_model", None)) and callable(getattr(base, "observations", None))):
        raise UsageError(
            f"--init adversarial needs an env with a transition model (such as FourRooms-v0 or Bandit-v0); {config.env} "
            "has none"
        )
    from agents.initial_policy import check_pi0

    try:
        check_pi0(config.start_pi0, int(env.action_space.n))
    except ValueError as err:
        raise UsageError(f"--init adversarial on {config.env}: {err}") from None


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


def check(config: RunConfig) -> dict[str, Any]:
    """Everything a run checks before it trains, without writing anything: the flags (:func:`validate`), the
    hyperparameters (:func:`resolve`), and the envs and model (or agent) built with them once, then dropped.

    :param config: the run
    :return: its resolved hyperparameters
    :raises UsageError: naming the problem
    """
    validate(config).close()
    hp = resolve(config)
    ALGOS[config.algo].checker()(config, hp)
    return hp


def resolve(config: RunConfig) -> dict[str, Any]:
    """:param config: the run
    :return: its hyperparameters, with ``n_timesteps``/``n_envs`` (and, for the tabular algorithms, ``init``/``pi0``)
        from the command line where given"""
    hp = load_hyperparams(config.algo, config.env, env_family(config.env), config.hyperparams, config.conf_file)
    if config.n_timesteps is not None:
        hp["n_timesteps"] = config.n_timesteps
    if config.n_envs is not None:
        hp["n_envs"] = config.n_envs
    if config.algo in TABULAR_ALGOS:
        hp.update(config.start_overrides())  # --init/--pi0 win over the hyperparameter file
    source = config.conf_file or f"hyperparams/{config.algo}.yml"
    if "n_timesteps" not in hp:
        raise UsageError(f"no n_timesteps for {config.env} in {source}: pass -n N")
    if isinstance(hp["n_timesteps"], bool) or not isinstance(hp["n_timesteps"], (int, float)):
        raise UsageError(f"n_timesteps must be a number (got {hp['n_timesteps']!r} in {source}); write !!float 1e5 or 100000")
    hp["n_timesteps"] = int(hp["n_timesteps"])
    if "policy" in hp and config.algo in ("ppo", "a2c", "qac"):
        from experiments.sb3_run import policy_name
        from experiments.zoo import policy_choice

        hp["policy"] = policy_name(config, policy_choice(hp["policy"], config.policy))  # the class the run builds
    return hp


#: Suffix of the folder of an interrupted run: only a run that finished gets the plain name.
INTERRUPTED_SUFFIX = "_interrupted"


def next_run_dir(config: RunConfig, interrupted: bool = False) -> Path:
    """:param config: the run
    :param interrupted: the folder of an interrupted run
    :return: ``<log_folder>/<algo>/<env>_<policy>_s<seed>`` for a finished run, ``..._s<seed>_interrupted`` for an
        interrupted one, with ``_2``, ``_3``... when that exists already (with ``--resume``, an interrupted run that is
        interrupted again replaces the folder it continued)"""
    base = Path(config.log_folder) / config.algo / (config.run_name + (INTERRUPTED_SUFFIX if interrupted else ""))
    resumed = resumed_dir(config) if interrupted else None
    if resumed is not None:
        return resumed
    candidate, k = base, 1
    while candidate.exists():
        k += 1
        candidate = base.with_name(f"{base.name}_{k}")
    return candidate


def resumed_dir(config: RunConfig) -> Path | None:
    """:param config: the run
    :return: with ``--resume``, the newest folder of this run that was interrupted (which its checkpoint continues);
        None without ``--resume`` or when there is none"""
    if not config.resume:
        return None
    base = Path(config.log_folder) / config.algo / (config.run_name + INTERRUPTED_SUFFIX)
    found = [path for path in (base, *sorted(base.parent.glob(f"{base.name}_*"))) if is_interrupted(path)]
    return max(found, key=lambda path: path.stat().st_mtime) if found else None


def is_interrupted(run_dir: Path) -> bool:
    """:param run_dir: a run folder
    :return: whether its summary marks it interrupted (missing folders and summaries: False)"""
    summary = run_dir / SUMMARY_FILE
    return summary.is_file() and bool(json.loads(summary.read_text()).get("interrupted"))


def run(config: RunConfig, run_dir: Path | None = None) -> dict[str, Any]:
    """Validate, run in a temporary folder, then move the run folder into place: a finished run to its name
    (``next_run_dir``), an interrupted one (Ctrl-C: ``summary.json`` says ``"interrupted": true``) to the same name with
    ``_interrupted`` (also after ``run_dir``'s name), so that no interrupted run ever holds a finished run's name. A
    resumed run that finishes removes the interrupted folder it continued.

    The folder holds ``config.yml`` (the config, the resolved hyperparameters and the ``provenance``), ``summary.json``
    and what the runner wrote (model, metrics.csv, monitor CSV, TensorBoard). Folders are made with ``mkdir``, so their
    mode follows the umask. A run that fails leaves nothing behind: neither its temporary folder nor the parent folders
    (``<log_folder>/<algo>/``, the log folder) that it created and that are still empty.

    :param config: the run
    :param run_dir: where the finished run goes (default: ``next_run_dir(config)``)
    :return: the summary, with ``run_dir``
    """
    validate(config).close()
    apply_num_threads(config.num_threads)
    hp = resolve(config)
    parent = Path(run_dir).parent if run_dir is not None else Path(config.log_folder) / config.algo
    created = make_folders(parent)
    tmp = parent / f".{config.run_name}.{secrets.token_hex(6)}.tmp"
    try:
        tmp.mkdir()  # not mkdtemp, which makes it 0700 whatever the umask
        record = provenance(config.algo, config.conf_file)
        write_yaml(tmp / CONFIG_FILE, {**config.to_dict(), "resolved_hyperparams": hp, "provenance": record})
        summary = ALGOS[config.algo].runner()(config, hp, tmp)
        summary.update(reference_summary(config, hp, tmp, summary))
        write_json(tmp / SUMMARY_FILE, summary)
        final = destination(config, run_dir, bool(summary.get("interrupted")))
        resumed = resumed_dir(config)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        if resumed is not None and resumed != final:
            shutil.rmtree(resumed, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_empty(created)
        raise
    return {**summary, "run_dir": str(final)}


def destination(config: RunConfig, run_dir: Path | None, interrupted: bool) -> Path:
    """:param config: the run
    :param run_dir: the folder asked for, or None
    :param interrupted: whether the run was interrupted
    :return: where its folder goes (see :func:`run`)"""
    if run_dir is None:
        return next_run_dir(config, interrupted)
    run_dir = Path(run_dir)
    return run_dir.with_name(run_dir.name + INTERRUPTED_SUFFIX) if interrupted else run_dir


def reference_summary(config: RunConfig, hp: dict[str, Any], run_dir: Path, summary: dict[str, Any]) -> dict[str, float]:
    """The run's score on its env's reference scale, computed from the run alone (``experiments.reference``).

    :param config: the run
    :param hp: its resolved hyperparameters
    :param run_dir: its folder (for ``metrics.csv``)
    :param summary: what the runner returned
    :return: ``normalized_score``, ``reference_random`` and ``reference_target`` where the env has a reference, and
        ``eval_deterministic`` for SB3 runs
    """
    numbers = {k: float(v) for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    last = {**numbers, **last_values(read_metrics(run_dir))}
    return reference_metrics({**config.to_dict(), "resolved_hyperparams": hp}, last)


def apply_num_threads(num_threads: int) -> None:
    """:param num_threads: ``--num-threads``: torch's intra-op threads for this process; -1 leaves torch's setting"""
    if num_threads > 0:
        import torch

        torch.set_num_threads(num_threads)


def make_folders(folder: Path) -> list[Path]:
    """Make ``folder`` and its missing parents, as ``os.makedirs`` does (mode ``0o777 & ~umask``).

    :param folder: the folder
    :return: the folders this call made, deepest first (for ``remove_empty``)
    """
    missing = [path for path in (folder, *folder.parents) if not path.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Remove the folders that are still empty, deepest first; stop at the first one that is not.

    :param folders: what ``make_folders`` returned
    """
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


#: What the code of a run is: a change under these paths (tracked or new, not ignored) makes the checkout dirty.
CODE_PATHS = ("agents", "envs", "experiments", "policies", "hyperparams", "train.py", "pyproject.toml")
#: Environment variables that set the thread pools of OpenMP, MKL and OpenBLAS.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
REPO_ROOT = HYPERPARAMS_DIR.parent


def provenance(algo: str | None = None, conf_file: str | None = None) -> dict[str, Any]:
    """What produced a run, recorded in its ``config.yml``; cheap (one ``git status``).

    :param algo: the run's algorithm, to record its hyperparameter file
    :return: ``git_commit`` and ``git_dirty`` of the code (``"unknown"`` and None outside a git checkout), the versions,
        the thread settings in effect (``torch_num_threads`` as ``torch.get_num_threads()`` returns it after
        ``--num-threads``, ``torch_num_interop_threads``, and the variables of ``THREAD_VARIABLES``, None when unset) and,
        with ``algo``, ``hyperparams_file`` (relative to the repository) with its ``hyperparams_sha256`` (of its bytes;
        None when there is no such file): ``hyperparams/<algo>.yml``, or the ``-conf/--conf-file``
    :param conf_file: the run's ``--conf-file``, or None
    """
    import stable_baselines3
    import torch

    commit, dirty = git_state()
    record: dict[str, Any] = {
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "gymnasium": gym.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        **{name: os.environ.get(name) for name in THREAD_VARIABLES},
    }
    if algo is not None:
        record.update(hyperparams_record(Path(conf_file).absolute() if conf_file else hyperparams_path(algo)))
    return record


def git_state() -> tuple[str, bool | None]:
    """:return: the commit checked out where the code lives, and whether ``CODE_PATHS`` differ from it (modified,
    staged or new files; ignored ones do not count); ``("unknown", None)`` outside a git checkout"""
    command = ["git", "--no-optional-locks", "status", "--porcelain=v2", "--branch", "--", *CODE_PATHS]
    try:
        result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    if result.returncode != 0:
        return "unknown", None
    lines = result.stdout.splitlines()
    oid = next((line.split()[2] for line in lines if line.startswith("# branch.oid ")), "(initial)")
    return ("unknown" if oid == "(initial)" else oid), any(not line.startswith("# ") for line in lines)


def hyperparams_record(path: Path) -> dict[str, str | None]:
    """:param path: a hyperparameter file
    :return: ``hyperparams_file`` (relative to the repository when inside it) and ``hyperparams_sha256`` of its bytes,
        None when the file does not exist"""
    name = path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else str(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return {"hyperparams_file": name, "hyperparams_sha256": digest}
