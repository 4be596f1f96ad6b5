"""Optimizers of the SB3 algorithms (PPO, A2C, QAC) by name: ``--hyperparams optimizer=sgd``.

The hyperparameters ``optimizer`` (a name of ``OPTIMIZERS``) and ``optimizer_kwargs`` (a mapping) become SB3's
``policy_kwargs`` ``optimizer_class`` and ``optimizer_kwargs``; the learning rate stays ``learning_rate`` (SB3 sets it
on the optimizer, schedule included). Each name has default keyword arguments, which ``optimizer_kwargs`` overrides
key by key:

- ``adam``: ``torch.optim.Adam``, ``eps=1e-5`` (SB3's Adam for PPO and A2C);
- ``sgd``: ``torch.optim.SGD``, no defaults: plain gradient steps, what the policy-gradient theory assumes;
- ``momentum``: ``torch.optim.SGD`` with ``momentum=0.9``;
- ``rmsprop``: ``torch.optim.RMSprop``, ``alpha=0.99, eps=1e-5, weight_decay=0`` (SB3's A2C default).

Without ``optimizer`` an algorithm keeps SB3's choice (PPO and QAC: Adam, eps 1e-5; A2C: RMSprop, or Adam with
``use_rms_prop: false``). The tabular and supervised runners have their own ``optimizer`` key (``hyperparams/exact.yml``,
``supervised.yml``); this module is for the SB3 ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch as th

from experiments.errors import UsageError

#: The hyperparameters this module consumes.
OPTIMIZER_KEYS = ("optimizer", "optimizer_kwargs")


@dataclass(frozen=True)
class Optimizer:
    """A torch optimizer class and the keyword arguments it gets unless ``optimizer_kwargs`` says otherwise."""

    cls: type[th.optim.Optimizer]
    defaults: dict[str, Any] = field(default_factory=dict)


OPTIMIZERS: dict[str, Optimizer] = {
    "adam": Optimizer(th.optim.Adam, {"eps": 1e-5}),
    "sgd": Optimizer(th.optim.SGD),
    "momentum": Optimizer(th.optim.SGD, {"momentum": 0.9}),
    "rmsprop": Optimizer(th.optim.RMSprop, {"alpha": 0.99, "eps": 1e-5, "weight_decay": 0}),
}


def optimizer_kwargs(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:param name: an optimizer of ``OPTIMIZERS``
    :param overrides: ``optimizer_kwargs`` of the hyperparameters (None: the defaults)
    :return: the keyword arguments the optimizer is built with (the learning rate aside)"""
    return {**optimizer_spec(name).defaults, **dict(overrides or {})}


def optimizer_spec(name: Any) -> Optimizer:
    """:param name: the ``optimizer`` hyperparameter
    :return: its entry of ``OPTIMIZERS``
    :raises UsageError: for an unknown name"""
    if not isinstance(name, str) or name.lower() not in OPTIMIZERS:
        raise UsageError(f"optimizer {name!r} is unknown: choose one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name.lower()]


def optimizer_policy_kwargs(hp: Mapping[str, Any], policy_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """SB3 ``policy_kwargs`` entries for the optimizer that the hyperparameters name.

    :param hp: resolved hyperparameters (``optimizer``, ``optimizer_kwargs``)
    :param policy_kwargs: the policy kwargs they go with (an ``optimizer_class`` there and ``optimizer`` here clash)
    :return: ``optimizer_class`` and ``optimizer_kwargs``, or nothing when ``optimizer`` is not given
    :raises UsageError: for an unknown name, kwargs that are not a mapping, or kwargs without a name
    """
    name, overrides = hp.get("optimizer"), hp.get("optimizer_kwargs")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise UsageError(f"optimizer_kwargs must be a mapping, e.g. optimizer_kwargs={{momentum: 0.5}} (got {overrides!r})")
    if name is None:
        if overrides:
            raise UsageError(f"optimizer_kwargs needs optimizer=NAME ({', '.join(OPTIMIZERS)})")
        return {}
    if "optimizer_class" in (policy_kwargs or {}):
        raise UsageError("both optimizer and policy_kwargs.optimizer_class are given: give the optimizer once")
    return {"optimizer_class": optimizer_spec(name).cls, "optimizer_kwargs": optimizer_kwargs(name.lower(), overrides)}
