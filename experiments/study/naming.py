"""Names: of a run's folder (``run_key``), of env kwargs in file names (``kwargs_tag``) and in tables (``env_label``), of a
policy (``policy_label``), of a tuning grid's point (``point_text``, ``point_suffix``), and of a study (``default_name``).

Every name is a pure function of what it names, so a rerun finds the same folders and the report the same labels.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from experiments.config import RunConfig

#: Env kwargs tags longer than this are replaced by a digest in run names.
MAX_TAG_CHARS = 40
#: A value that appears as itself in an env kwargs tag (others are a digest).
TAG_VALUE = re.compile(r"[A-Za-z0-9.+\-\[\]]+")


def run_key(config: RunConfig, point_keys: Sequence[str] = ()) -> str:
    """:param config: a run
    :param point_keys: the hyperparameters of a tuning grid's point, named after the seed
    :return: its folder name in a study: ``<algo>_<env>_<policy>_s<seed>`` (deterministic, so resume finds it), then
        ``_<kwargs tag>`` where the run has env kwargs (``kwargs_tag``: two variants of an env never share a folder), and
        in a tuning grid ``_<key>-<value>`` per tuned key (``point_suffix``)"""
    tag = kwargs_tag(config.env_kwargs)
    name = f"{config.algo}_{config.run_name}" + (f"_{tag}" if tag else "")
    return f"{name}_{point_suffix(point_of(config, point_keys))}" if point_keys else name


def kwargs_json(env_kwargs: Mapping[str, Any]) -> str:
    """:param env_kwargs: a run's env kwargs
    :return: them as compact JSON with sorted keys (the ``env_kwargs`` column of ``results.csv``); ``""`` for none"""
    return json.dumps(dict(env_kwargs), sort_keys=True, separators=(",", ":"), default=str) if env_kwargs else ""


def kwargs_tag(env_kwargs: Mapping[str, Any]) -> str:
    """A short, file-system-safe and stable name part for env kwargs: ``slip-0.1``, ``subgoals-[]``,
    ``slip-0.1_subgoals-[]`` (keys sorted); a value with other characters is ``h<digest>``, and a tag longer than
    ``MAX_TAG_CHARS`` is ``kwargs-<digest>`` of all of them.

    :param env_kwargs: a run's env kwargs
    :return: the tag; ``""`` for none
    """
    parts = []
    for key in sorted(env_kwargs):
        text = json.dumps(env_kwargs[key], sort_keys=True, separators=(",", ":"), default=str).strip('"')
        parts.append(f"{key}-{text if TAG_VALUE.fullmatch(text) else 'h' + _digest(text)}")
    tag = "_".join(parts)
    return tag if len(tag) <= MAX_TAG_CHARS else f"kwargs-{_digest(kwargs_json(env_kwargs))}"


def point_of(config: RunConfig, keys: Sequence[str]) -> dict[str, Any]:
    """:param config: a run
    :param keys: tuned hyperparameters
    :return: the run's values of them"""
    return {k: config.hyperparams[k] for k in keys if k in config.hyperparams}


def policy_label(policy: str, p: float) -> str:
    """:param policy: a policy parameterization
    :param p: its escort power
    :return: ``escort-p2`` for escort, the policy name otherwise"""
    return f"{policy}-p{p:g}" if policy == "escort" else policy


def default_name(configs: Sequence[RunConfig]) -> str:
    """A study's name derived from its grid, e.g. ``ppo_FourRooms-v0_softmax+escort-p2_s0-9``.

    :param configs: the runs
    :return: algorithms, envs (with their env kwargs tags), policies and seeds (long lists shortened to a count and a
        digest), and ``_n<steps>`` (``_n<least>-<most>`` for envs with several budgets)
    """
    algos = _unique(c.algo for c in configs)
    env_ids = _unique(_env_part(c) for c in configs)
    policies = _unique(policy_label(c.policy, c.p) for c in configs)
    seeds = sorted({c.seed for c in configs})
    parts = [_short(algos, "algos"), _short(env_ids, "envs"), _short(policies, "policies"), _seeds_text(seeds)]
    budgets = sorted({c.n_timesteps for c in configs if c.n_timesteps is not None})
    if budgets:
        parts.append(f"n{budgets[0]}" + (f"-{budgets[-1]}" if len(budgets) > 1 else ""))
    return "_".join(parts)


def _env_part(config: RunConfig) -> str:
    tag = kwargs_tag(config.env_kwargs)
    return config.env.replace("/", "-").replace(":", "-") + (f"-{tag}" if tag else "")


def _unique(values: Any) -> list[str]:
    return list(dict.fromkeys(values))


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:6]


def _short(values: list[str], noun: str) -> str:
    text = "+".join(values)
    return text if len(values) <= 3 and len(text) <= 48 else f"{len(values)}{noun}-{_digest(text)}"


def _seeds_text(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return f"s{seeds[0]}"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"s{seeds[0]}-{seeds[-1]}"
    return f"{len(seeds)}seeds-{_digest(','.join(map(str, seeds)))}"


def value_text(value: Any) -> str:
    """:param value: a tuned value
    :return: it as a command line would give it: ``0.0003``, ``1e-05``, ``sgd``, ``[64, 64]``"""
    if isinstance(value, float):
        return f"{value:g}"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def point_text(point: Mapping[str, Any]) -> str:
    """:param point: tuned values
    :return: ``learning_rate=0.0003 optimizer=sgd``"""
    return " ".join(f"{k}={value_text(v)}" for k, v in point.items())


def point_suffix(point: Mapping[str, Any]) -> str:
    """:param point: tuned values
    :return: a file-name part, ``learning_rate-0.0003_optimizer-sgd`` (a value with other characters is a digest)"""
    parts = []
    for key, value in point.items():
        text = value_text(value)
        if not re.fullmatch(r"[A-Za-z0-9.+-]+", text):
            text = "h" + _digest(text)
        parts.append(f"{key}-{text}")
    return "_".join(parts)


def kwargs_text(env_kwargs: Mapping[str, Any]) -> str:
    """:param env_kwargs: env kwargs
    :return: ``k=v`` pairs joined by commas, values as JSON (``subgoals=[], slip=0.1``)"""
    return ", ".join(f"{k}={json.dumps(v, separators=(',', ':'), default=str)}" for k, v in env_kwargs.items())


def env_label(env: str, env_kwargs: Mapping[str, Any]) -> str:
    """:param env: an env id
    :param env_kwargs: its kwargs
    :return: how groups, tables and figures name it: the id, with its kwargs where it has some
        (``FourRooms-v0 (slip=0.1)``), so that variants of an env are tuned and reported apart"""
    return f"{env} ({kwargs_text(env_kwargs)})" if env_kwargs else env
