"""Reference scores: what a run's final score is normalised by, computed from that run alone.

    normalized = (score - random) / (target - random)

so 0 is the uniform-random policy and 1 the target, whatever other runs a study holds. A reference comes from one of
two places, chosen by the run's score metric:

- **The transition model** (``final_value``, ``greedy_value``: V(rho) of the run's policy). ``target`` is V*(rho) by
  value iteration and ``random`` the exact value of the uniform policy (``envs.policy_evaluation``), both on the model
  that the run's env kwargs make (and, for exact runs, its ``rho`` hyperparameter: ``uniform`` starts uniformly in a
  non-terminal state). FourRooms-v0 with ``subgoals=[]`` is another MDP than the default, with another V*.
- **The table** ``experiments/reference_scores.yml`` (every other score metric): per env id under ``envs``, and per
  Atari game under ``atari`` (keyed by the game's name in its ids: ``ALE/Pong-v5``, ``PongNoFrameskip-v4`` and
  ``Pong-v4`` all find ``Pong``), a ``random`` and a ``target`` score, each with its ``source``. An entry is for the
  env as registered: a run with env kwargs gets no reference from the table, since kwargs can change the scale
  (CartPole's ``max_episode_steps``, MiniGrid's ``size``, Digits' data files); its env is then left out of the
  report's cross-env aggregates. Entries marked ``model: true`` list, for the default kwargs, the numbers that the
  model gives; they never normalise returns.

A run's final score is the first of ``SCORE_METRICS`` that it has: the exact V(rho) where there is a model (exact
runs: ``final_value``; SB3 runs: ``greedy_value``), else supervised ``test_accuracy``, else the SB3 ``final_return``
(the last ``eval_return`` for a run that has none).

**Greedy or stochastic.** ``score_policy`` says whose score a metric is: exact runs evaluate the stochastic policy
(V^pi of the current policy); supervised ``test_accuracy`` is the argmax prediction's (greedy); SB3's
``fraction_of_optimal`` and ``greedy_value`` are the greedy policy's, and its ``eval_return`` and ``final_return``
are greedy iff the evaluation was deterministic (``eval_deterministic`` of the resolved hyperparameters, else greedy
for every env but Atari, MiniGrid and MinAtar, as ``experiments.sb3_run.eval_deterministic``).

**In results.csv** (``experiments.study.storage.run_rows``) each run carries, at its last timestep, the metrics of
``reference_metrics``: ``normalized_score``, ``reference_random`` and ``reference_target`` when a reference applies,
and for SB3 runs ``eval_deterministic`` (1: its evaluation returns are the greedy policy's, 0: the stochastic one's).
The columns of the table stay as they were.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

REFERENCE_FILE = Path(__file__).with_name("reference_scores.yml")
GREEDY, STOCHASTIC = "greedy", "stochastic"
#: Final-score metrics, by preference: the first a run has is its score.
SCORE_METRICS = ("final_value", "greedy_value", "test_accuracy", "final_return", "eval_return")
#: Score metrics that are V(rho) of the run's policy, normalised by the transition model.
MODEL_METRICS = ("final_value", "greedy_value")
#: Algorithms whose every score belongs to one policy: exact evaluates V^pi of the current (stochastic) policy, and
#: supervised scores the argmax prediction.
ALGO_POLICIES = {"exact": STOCHASTIC, "tabular": STOCHASTIC, "supervised": GREEDY}
#: SB3 metrics computed exactly from the greedy policy (``experiments.tabular_eval.greedy_report``).
GREEDY_METRICS = ("greedy_value", "fraction_of_optimal", "optimal_value")
#: Families whose SB3 evaluations sample actions by default (rl-zoo3 evaluates Atari and MiniGrid stochastically,
#: gymnax-blines MinAtar).
STOCHASTIC_FAMILIES = ("atari", "minigrid", "minatar")
MODEL_SOURCES = (
    "V of the uniform policy from rho (envs.policy_evaluation on the transition model, with the run's env kwargs)",
    "V*(rho) (envs.value_iteration on the transition model, with the run's env kwargs)",
)
HEADER = """\
# Reference scores of experiments.reference: normalized = (score - random) / (target - random).
# envs: per env id, for the env as registered (a run with env kwargs gets no reference from this file).
# atari: per game, by the name in its ids (ALE/Pong-v5, PongNoFrameskip-v4 and Pong-v4 all find Pong): the Atari-57
#   random and human scores of DeepMind's DQN Zoo (dqn_zoo/atari_data.py; human: Mnih et al. 2015, van Hasselt et al.
#   2016), the normalisation of rliable's Atari results. Random: uniform actions, up to 30 no-op starts, episodes
#   capped at 108,000 frames, no sticky actions (ALE/*-v5 ids repeat actions with probability 0.25).
# model: true marks envs with a transition model: their runs are normalised by V*(rho) and the uniform policy's
#   V(rho), computed from the model with each run's env kwargs; the numbers below are the default kwargs' ones.
# A random score with `episodes` was measured: python benchmarks/random_scores.py --write rewrites it.
# MinAtar/Seaquest-v1 has no entry: no published target holds for it. gymnax-blines published no Seaquest PPO score
#   (gymnax README, environment table: "-"), and MinAtar's README says its published Seaquest results (DQN and
#   AC(lambda), Young & Tian 2019) are for MinAtar v1.0.10 and lower, before the oxygen-bar fix of v1.0.11, and may
#   differ from then on (minatar 1.0.15 here). Its runs are reported per game and left out of aggregates.
"""


@dataclass(frozen=True)
class Reference:
    """The two scores that put an env's scores on a common scale, and where each comes from."""

    random: float
    target: float
    random_source: str
    target_source: str

    def normalize(self, score: float) -> float:
        """:param score: a final score on this env
        :return: ``(score - random) / (target - random)``"""
        return (score - self.random) / (self.target - self.random)


@dataclass(frozen=True)
class RunScore:
    """A run's final score: its metric, value, whose policy it is, and its reference (None: the env has none)."""

    metric: str
    raw: float
    policy: str
    reference: Reference | None

    @property
    def normalized(self) -> float | None:
        """:return: the normalised score, or None without a reference"""
        return None if self.reference is None else self.reference.normalize(self.raw)


def atari_game(env_id: str) -> str:
    """:param env_id: an Atari env id (``ALE/Pong-v5``, ``PongNoFrameskip-v4``, ``Pong-ramDeterministic-v4``)
    :return: the game's name (``Pong``)"""
    name = env_id.split(":")[-1].removeprefix("ALE/")
    name = re.sub(r"-v\d+$", "", name)
    name = re.sub(r"(NoFrameskip|Deterministic)$", "", name)
    return name.removesuffix("-ram")


def load_reference_scores(path: Path = REFERENCE_FILE) -> dict[str, Any]:
    """:param path: a reference-score YAML file
    :return: a copy of its content, checked: ``envs`` and ``atari`` map names to entries with ``random`` and
        ``target``, each a ``score`` and its ``source``"""
    return copy.deepcopy(_load(str(path)))


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text()) or {}
    for section in ("envs", "atari"):
        for name, entry in (data.get(section) or {}).items():
            for side in ("random", "target"):
                value = (entry or {}).get(side) or {}
                if not isinstance(value.get("score"), int | float) or not value.get("source"):
                    raise ValueError(f"{path}: {section}.{name}.{side} needs a numeric score and a source")
    return data


def write_reference_scores(data: Mapping[str, Any], path: Path = REFERENCE_FILE) -> Path:
    """Write a reference-score file: ``HEADER``, then the data as block YAML (the order of the mapping is kept).

    :param data: ``{"envs": {...}, "atari": {...}}``
    :param path: destination
    :return: the path
    """
    text = yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=False, width=1000, allow_unicode=True)
    tmp = Path(f"{path}.tmp")
    tmp.write_text(HEADER + text)
    tmp.replace(path)
    _load.cache_clear()
    return Path(path)


def table_entry(env_id: str, scores: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """:param env_id: an env id (``module:`` prefixes are ignored)
    :param scores: reference-score data (default: ``load_reference_scores()``)
    :return: the env's entry (under ``envs`` by id, else under ``atari`` by game), or None"""
    scores = _load(str(REFERENCE_FILE)) if scores is None else scores
    name = env_id.split(":")[-1]
    envs = scores.get("envs") or {}
    if name in envs:
        return envs[name]
    from envs.make import ATARI, env_family

    return (scores.get("atari") or {}).get(atari_game(name)) if env_family(name) == ATARI else None


def table_reference(env_id: str, env_kwargs: Mapping[str, Any], scores: Mapping[str, Any] | None = None) -> Reference | None:
    """:param env_id: an env id
    :param env_kwargs: the run's env kwargs (the table is for the env as registered: any kwargs, no reference)
    :param scores: reference-score data (default: ``load_reference_scores()``)
    :return: the table's reference for returns on this env, or None"""
    entry = table_entry(env_id, scores)
    if entry is None or entry.get("model") or env_kwargs:
        return None
    random, target = entry["random"], entry["target"]
    return _checked(Reference(float(random["score"]), float(target["score"]), random["source"], target["source"]))


def model_reference(env_id: str, env_kwargs: Mapping[str, Any], rho: str = "env") -> Reference | None:
    """:param env_id: an env id
    :param env_kwargs: the run's env kwargs
    :param rho: ``env`` (the env's start distribution) or ``uniform`` (uniform over the non-terminal states)
    :return: V of the uniform policy and V*, from rho, on the env's transition model; None without a model"""
    return _model_reference(env_id, json.dumps(dict(env_kwargs), sort_keys=True), rho)


@lru_cache(maxsize=64)
def _model_reference(env_id: str, env_kwargs: str, rho: str) -> Reference | None:
    import gymnasium as gym
    import numpy as np

    from envs import policy_evaluation, value_iteration
    from envs.make import ensure_registered

    ensure_registered(env_id)
    env = gym.make(env_id, **json.loads(env_kwargs))
    try:
        base = env.unwrapped
        if not hasattr(base, "transition_model"):
            return None
        mdp = base.transition_model()
    finally:
        env.close()
    if rho == "uniform":
        mdp = dataclasses.replace(mdp, initial=~mdp.terminal / (~mdp.terminal).sum())
    uniform = np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)
    random = float(policy_evaluation(mdp, uniform)[0] @ mdp.initial)
    optimal = float(value_iteration(mdp)[0] @ mdp.initial)
    return _checked(Reference(random, optimal, *MODEL_SOURCES))


def _checked(reference: Reference) -> Reference | None:
    """:return: the reference, or None when its target is not above its random score (nothing to normalise by)"""
    ok = math.isfinite(reference.random) and math.isfinite(reference.target) and reference.target > reference.random
    return reference if ok else None


def reference_for(metric: str, env_id: str, env_kwargs: Mapping[str, Any], hp: Mapping[str, Any]) -> Reference | None:
    """:param metric: the run's score metric
    :param env_id: the env id
    :param env_kwargs: the run's env kwargs
    :param hp: the run's resolved hyperparameters (``rho`` of exact runs)
    :return: the reference of that score, or None"""
    if metric in MODEL_METRICS:
        return model_reference(env_id, env_kwargs, str(hp.get("rho", "env")))
    return table_reference(env_id, env_kwargs)


def reference_sources(metric: str, env_id: str) -> tuple[str, str] | None:
    """:param metric: a score metric
    :param env_id: an env id
    :return: where the random and the target scores of that metric come from, or None (no table entry)"""
    if metric in MODEL_METRICS:
        return MODEL_SOURCES
    entry = table_entry(env_id)
    return None if entry is None or entry.get("model") else (entry["random"]["source"], entry["target"]["source"])


def no_reference_reason(env_id: str, env_kwargs: Mapping[str, Any]) -> str:
    """:param env_id: an env without a reference
    :param env_kwargs: the env kwargs of its runs
    :return: why, in a few words"""
    entry = table_entry(env_id)
    if entry is None:
        return f"no entry in {REFERENCE_FILE.name}"
    if entry.get("model"):
        return "its runs have no exact V(rho) to compare with V*"
    if env_kwargs:
        return f"the entry in {REFERENCE_FILE.name} is for the env as registered, not with env kwargs {dict(env_kwargs)}"
    return "its runs carry no normalized_score: `python train.py report FOLDER` rebuilds results.csv from the runs"


def score_metric(metrics: Iterable[str]) -> str | None:
    """:param metrics: the metric names a run has
    :return: its final-score metric (the first of ``SCORE_METRICS`` present), or None"""
    present = set(metrics)
    return next((m for m in SCORE_METRICS if m in present), None)


def eval_greedy(env_id: str, hp: Mapping[str, Any]) -> bool:
    """:param env_id: the env id
    :param hp: resolved hyperparameters (``eval_deterministic`` wins when given)
    :return: whether SB3 evaluations take the greedy action: yes but for Atari, MiniGrid and MinAtar"""
    if "eval_deterministic" in hp:
        return bool(hp["eval_deterministic"])
    from envs.make import env_family

    return env_family(env_id) not in STOCHASTIC_FAMILIES


def score_policy(algo: str, env_id: str, hp: Mapping[str, Any], metric: str) -> str:
    """:param algo: the run's algorithm
    :param env_id: its env
    :param hp: its resolved hyperparameters
    :param metric: a score metric of the run
    :return: ``"greedy"`` or ``"stochastic"``: whose score the metric is"""
    if algo in ALGO_POLICIES:
        return ALGO_POLICIES[algo]
    return GREEDY if metric in GREEDY_METRICS or eval_greedy(env_id, hp) else STOCHASTIC


def run_score(
    algo: str, env_id: str, env_kwargs: Mapping[str, Any], hp: Mapping[str, Any], last: Mapping[str, float]
) -> RunScore | None:
    """:param algo: the run's algorithm
    :param env_id: its env
    :param env_kwargs: its env kwargs
    :param hp: its resolved hyperparameters
    :param last: the last value of each of its metrics
    :return: its final score and reference, or None when it has no score metric"""
    metric = score_metric(last)
    if metric is None:
        return None
    reference = reference_for(metric, env_id, env_kwargs, hp)
    return RunScore(metric, float(last[metric]), score_policy(algo, env_id, hp, metric), reference)


def reference_metrics(config: Mapping[str, Any], last: Mapping[str, float]) -> dict[str, float]:
    """The metrics that ``results.csv`` adds to a run (see the module's docstring).

    :param config: the run's ``config.yml`` (``algo``, ``env``, ``env_kwargs``, ``resolved_hyperparams``)
    :param last: the last value of each of the run's metrics
    :return: ``normalized_score``, ``reference_random``, ``reference_target`` (with a reference) and
        ``eval_deterministic`` (SB3 runs)
    """
    algo, env_id = str(config["algo"]), str(config["env"])
    hp = config.get("resolved_hyperparams") or {}
    out: dict[str, float] = {}
    if algo not in ALGO_POLICIES:
        out["eval_deterministic"] = float(eval_greedy(env_id, hp))
    score = run_score(algo, env_id, config.get("env_kwargs") or {}, hp, last)
    if score is not None and score.reference is not None:
        out.update(
            normalized_score=float(score.normalized),
            reference_random=score.reference.random,
            reference_target=score.reference.target,
        )
    return out
