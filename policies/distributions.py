"""The escort transform as an SB3 action distribution."""

import math
import numbers
from typing import TypeVar

import torch as th
from stable_baselines3.common.distributions import CategoricalDistribution
from torch.distributions import Categorical

SelfEscortDistribution = TypeVar("SelfEscortDistribution", bound="EscortDistribution")

DEFAULT_EPS = 1e-6
"""Default floor added to ``|theta|`` before the logarithm.

About eight float32 ulps of 1: coordinates a float32 network cannot tell apart from zero (next to O(1) ones) count as
zero. It bounds the logits below by ``p * log(eps)`` and the gradient of a logit by ``p / eps``, and changes the
probabilities by a relative error of at most ``p * eps / min|theta|``, negligible once ``|theta| >> eps``.
"""


def check_escort_params(p: float, eps: float = DEFAULT_EPS) -> None:
    """
    Raise ``ValueError`` unless the escort power and floor are usable.

    :param p: Escort power; must be a finite number > 0.
    :param eps: Floor added to ``|theta|``; must be a finite number > 0.
    """
    if not (isinstance(p, numbers.Real) and math.isfinite(p) and p > 0):
        raise ValueError(f"escort power p must be a finite number > 0, got {p!r}")
    if not (isinstance(eps, numbers.Real) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"escort eps must be a finite number > 0, got {eps!r}")


def escort_logits(theta: th.Tensor, p: float, eps: float = DEFAULT_EPS) -> th.Tensor:
    """
    Logits whose softmax is the escort transform of ``theta``: ``p * log(|theta| + eps)``.

    ``softmax(escort_logits(theta))[a] = (|theta_a| + eps)^p / sum_b (|theta_b| + eps)^p``, which is
    ``|theta_a|^p / sum_b |theta_b|^p`` up to a relative error of ``p * eps / min|theta|``. Magnitudes far below ``eps``
    count as ``eps``: a row of zeros gives the uniform distribution. The logits are finite for every finite ``theta``,
    and so is their gradient ``p * sign(theta) / (|theta| + eps)`` (0 at exactly 0, at most ``p / eps`` in size).
    ``eps`` must be representable in ``theta``'s dtype (the default is, in float32 and float64).

    :param theta: Escort parameters, actions on the last dimension.
    :param p: Escort power, > 0.
    :param eps: Floor added to ``|theta|``, > 0.
    :return: Logits, same shape and dtype as ``theta``.
    """
    check_escort_params(p, eps)
    return _escort_logits(theta, p, eps)


def _escort_logits(theta: th.Tensor, p: float, eps: float) -> th.Tensor:
    """:func:`escort_logits` without the argument checks, in the fewest kernels (``xlogy(p, x) = p * log(x)``)."""
    return th.xlogy(p, th.abs(theta).add_(eps))


class EscortDistribution(CategoricalDistribution):
    """
    Categorical distribution for discrete actions under the escort transform:

    ``pi(a) = |theta_a|^p / sum_b |theta_b|^p``

    computed as a torch ``Categorical`` over the logits ``p * log(|theta| + eps)`` (see :func:`escort_logits`).
    The action net is SB3's linear layer; its output is ``theta``. The distribution is invariant to the scale of
    ``theta``: ``pi(c * theta) = pi(theta)`` for ``c != 0`` (as long as ``|c * theta| >> eps``).

    :param action_dim: Number of discrete actions
    :param p: Escort power, > 0 (2 by default)
    :param eps: Floor added to ``|theta|`` before the logarithm, > 0: coordinates with ``|theta| << eps`` count as
        ``eps``, so an all-zero ``theta`` gives the uniform distribution and no output or gradient is infinite.
    """

    theta: th.Tensor

    def __init__(self, action_dim: int, p: float = 2.0, eps: float = DEFAULT_EPS):
        check_escort_params(p, eps)
        super().__init__(action_dim)
        self.p = p
        self.eps = eps

    def proba_distribution(self: SelfEscortDistribution, action_logits: th.Tensor) -> SelfEscortDistribution:
        """
        Set the distribution from the escort parameters.

        :param action_logits: ``theta``, the output of the action net (named as in SB3; these are not logits)
        :return: self
        """
        self.theta = action_logits
        self.distribution = Categorical(logits=_escort_logits(action_logits, self.p, self.eps))
        return self

    def mode(self) -> th.Tensor:
        """
        The most likely action, ``argmax_a |theta_a|``, read from ``theta`` so that magnitudes the logits cannot
        tell apart (far below ``eps``, or equal after rounding) are still ordered.

        :return: Actions
        """
        return th.argmax(th.abs(self.theta), dim=-1)
