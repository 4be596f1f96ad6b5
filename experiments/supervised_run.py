"""One supervised run: train a softmax or escort policy network as a classifier on a classification env's data.

For ``--algo supervised``, ``-n/--n-timesteps`` counts epochs (passes over the training split), not env steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym

from agents.supervised import OPTIMIZERS, EpochMetrics, Supervised
from experiments.config import RunConfig
from experiments.errors import UsageError
from experiments.results import write_metrics
from experiments.zoo import policy_kwargs_objects

MODEL_FILE = "model.pt"

HYPERPARAMS = ("n_timesteps", "optimizer", "learning_rate", "momentum", "batch_size", "policy_kwargs")
"""Keys ``hyperparams/supervised.yml`` may set: epochs (``n_timesteps``), the optimizer (sgd, momentum, adam), its step
size and momentum, the minibatch size, and the policy network's kwargs (``net_arch``, ...)."""

IGNORED = ("n_envs",)
"""Keys the command line may add that have no meaning for a supervised run."""


def run_supervised(config: RunConfig, hp: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """
    Train for ``n_timesteps`` epochs; write ``metrics.csv`` (per epoch, starting at 0 = before training:
    ``train_loss``, ``train_accuracy``, ``test_accuracy``, ``output_grad_norm``; the ``timesteps`` column holds the
    epoch) and ``model.pt`` (the policy's ``state_dict``, loadable into the same policy class).

    :param config: the run (``policy``: softmax or escort; ``p``; ``env`` with ``env_kwargs``; ``seed``; ``device``)
    :param hp: resolved hyperparameters (see :data:`HYPERPARAMS`)
    :param run_dir: the (temporary) run folder
    :return: the last epoch's metrics, with ``epochs``, ``n_train``, ``n_test`` and ``wall_time``
    """
    env = _classification_env(config)
    epochs = int(config.n_timesteps if config.n_timesteps is not None else hp.get("n_timesteps", 0))
    if epochs < 1:
        raise UsageError(f"supervised runs need at least one epoch: pass -n EPOCHS (got {epochs})")
    classifier = _make_classifier(config, hp, env)
    start = time.perf_counter()
    try:
        history = classifier.learn(env.dataset("train"), env.dataset("test"), epochs, callback=_printer(config.verbose))
    except FloatingPointError as err:
        raise UsageError(f"{err}; learning_rate is {hp.get('learning_rate')} ({hp.get('optimizer')})") from None
    wall = time.perf_counter() - start
    write_metrics(run_dir, [row for record in history for row in record.rows()])
    classifier.save(run_dir / MODEL_FILE)
    last = history[-1]
    return {
        "train_loss": last.train_loss,
        "train_accuracy": last.train_accuracy,
        "test_accuracy": last.test_accuracy,
        "output_grad_norm": last.output_grad_norm,
        "epochs": epochs,
        "n_train": env.n_train,
        "n_test": env.n_test,
        "wall_time": wall,
    }


def check_supervised(config: RunConfig, hp: dict[str, Any]) -> None:
    """Build the run's env and classifier with every hyperparameter, then drop them (see ``experiments.run.check``).

    :param config: the run
    :param hp: resolved hyperparameters
    """
    _make_classifier(config, hp, _classification_env(config))


def _classification_env(config: RunConfig) -> Any:
    try:
        env = gym.make(config.env, **config.env_kwargs).unwrapped
    except (TypeError, ValueError, OSError, gym.error.Error) as err:
        raise UsageError(f"cannot make {config.env} with --env-kwargs {config.env_kwargs}: {err}") from None
    if not callable(getattr(env, "dataset", None)):
        raise UsageError(f"--algo supervised needs a classification env with a data set (Digits-v0); {config.env} has none")
    return env


def _make_classifier(config: RunConfig, hp: dict[str, Any], env: Any) -> Supervised:
    unknown = sorted(set(hp) - set(HYPERPARAMS) - set(IGNORED))
    if unknown:
        raise UsageError(f"unknown supervised hyperparameters {unknown}: use {', '.join(HYPERPARAMS)}")
    optimizer = hp.get("optimizer", "sgd")
    if optimizer not in OPTIMIZERS:
        raise UsageError(f"optimizer '{optimizer}' is unknown: choose one of {', '.join(OPTIMIZERS)}")
    numbers = {key: hp[key] for key in ("learning_rate", "momentum", "batch_size") if key in hp}
    if any(isinstance(v, bool) or not isinstance(v, int | float) or v <= 0 for v in numbers.values()):
        raise UsageError(f"learning_rate, momentum and batch_size must be numbers > 0 (got {numbers})")
    if numbers.get("momentum", 0.0) >= 1:
        raise UsageError(f"momentum must be < 1 (got {numbers['momentum']}); 0.9 is usual")
    try:
        return Supervised(
            config.policy,
            env.observation_space,
            env.action_space,
            p=config.p,
            optimizer=optimizer,
            learning_rate=float(hp.get("learning_rate", 0.1)),
            momentum=float(hp.get("momentum", 0.9)),
            batch_size=int(hp.get("batch_size", 32)),
            policy_kwargs=policy_kwargs_objects(hp.get("policy_kwargs") or {}),
            seed=config.seed,
            device=config.device,
        )
    except TypeError as err:
        raise UsageError(f"policy_kwargs do not fit the policy: {err}; fix them in --hyperparams or the YAML") from None


def _printer(verbose: int) -> Callable[[EpochMetrics], None] | None:
    if verbose < 2:
        return None

    def show(record: EpochMetrics) -> None:
        print(
            f"epoch {record.epoch:4d}  loss {record.train_loss:.4e}  train acc {record.train_accuracy:.4f}  "
            f"test acc {record.test_accuracy:.4f}  output grad norm {record.output_grad_norm:.3e}"
        )

    return show
