"""The escort transform as an SB3 action distribution."""

import functools
import math
import numbers
from typing import TypeVar

import torch as th
from stable_baselines3.common.distributions import CategoricalDistribution
from torch.distributions import Categorical

SelfEscortDistribution = TypeVar("SelfEscortDistribution", bound="EscortDistribution")

DEFAULT_EPS = 1e-30
"""Default relative floor ``f``: a magnitude below ``f`` times the row's largest counts as ``f`` times it.

Escort probabilities are computed from the ratios ``|theta_a| / max_b |theta_b|``, so they are exact to rounding at
every scale; only ratios below ``f`` are changed. A floored ratio has weight ``f^p`` against the weight 1 of the
largest entry, so its probability is ``f^p`` at most and every other probability moves by a relative ``(K - 1) f^p``
at most (``K`` actions). With ``f = 1e-30`` and ``K = 18`` that is ``2e-14`` at ``p = 0.5`` and below float64 rounding
for ``p >= 1``; an entry whose exact probability exceeds ``f^p`` is never floored. The floored logit ``p * log(f)`` is
finite for every ``p`` (``f^p`` may underflow to a probability of 0; the log-probability stays finite), and ``f`` is a
normal number in float32 and float64, so ``p / f``, the largest slope of ``p * log`` on the floored ratios, is finite
too. A larger ``f`` bounds the gradient of a nearly-zero coordinate (``p / (f * m)`` at most, ``m`` the row's scale)
more tightly, at the cost of exactness for the rows it floors.
"""

SCALE_FLOOR_TINIES = 4096.0
"""The absolute floor ``A`` of the escort logits, in units of the dtype's smallest normal number ``tiny``.

``A = 4096 * tiny`` is about ``4.8e-35`` in float32 and ``9.1e-305`` in float64. Magnitudes below ``A`` count as ``A``,
so the row's scale ``m`` is at least ``A``, a row whose magnitudes are all below ``A`` (all zeros, or subnormal) is
exactly uniform, and no denominator is 0. Every magnitude that keeps its own logit is at least ``A``, and ``tiny * max``
is about 4 in IEEE formats, so every partial derivative of a logit is at most ``p / A``, about ``p * max / 16384``:
finite in both dtypes (and so is a gradient whose upstream factor per logit is below ``16384 / p``). The price: a row
with ``A < m < A / f`` has the relative floor ``A / m`` instead of ``f``. That is below ``5e-23`` for ``m >= 1e-12`` in
float32 (``9e-293`` in float64), but ``2.4e-5`` for ``[1e-30, 2e-30, 0]`` in float32: exact there for ``p >= 1``,
while at ``p = 0.5`` the zero gets probability ``3e-3``. float16's range is too narrow for this rule (``A = 0.25``).
"""


def check_escort_params(p: float, eps: float = DEFAULT_EPS) -> None:
    """
    Raise ``ValueError`` unless the escort power and relative floor are usable.

    :param p: Escort power; must be a finite number > 0.
    :param eps: Relative floor ``f``; must be a number in ``(0, 1)``.
    """
    if not (isinstance(p, numbers.Real) and math.isfinite(p) and p > 0):
        raise ValueError(f"escort power p must be a finite number > 0, got {p!r}")
    if not (isinstance(eps, numbers.Real) and 0 < eps < 1):
        raise ValueError(f"escort eps must be a number in (0, 1), got {eps!r}")


@functools.cache
def scale_floor(dtype: th.dtype) -> float:
    """
    The absolute floor ``A`` of the escort logits in ``dtype`` (see :data:`SCALE_FLOOR_TINIES`).

    :param dtype: A floating-point dtype.
    :return: ``SCALE_FLOOR_TINIES`` times the dtype's smallest normal number.
    """
    return SCALE_FLOOR_TINIES * th.finfo(dtype).tiny


def escort_logits(theta: th.Tensor, p: float, eps: float = DEFAULT_EPS) -> th.Tensor:
    """
    Logits whose softmax is the escort transform of ``theta``: ``p * log(max(|theta| / m, f))``, ``m = max_b |theta_b|``.

    ``softmax(escort_logits(theta))[a] = |theta_a|^p / sum_b |theta_b|^p`` to rounding whenever every nonzero
    ``|theta_a|`` is at least ``f * m``, at any scale ``m``: the logits depend on ``theta`` only through the ratios
    ``|theta_a| / m``, so ``escort_logits(c * theta) = escort_logits(theta)`` to rounding for every ``c != 0``. A ratio
    below ``f`` counts as ``f``: an exact zero has probability ``f^p / sum_b max(|theta_b| / m, f)^p`` instead of 0
    (:data:`DEFAULT_EPS` says what that costs). The guards, with ``A = scale_floor(theta.dtype)``
    (:data:`SCALE_FLOOR_TINIES`): magnitudes below ``A`` count as ``A``, so ``m >= A`` and a row with every magnitude
    below ``A`` (all zeros, or subnormal) is exactly uniform; ``f`` below ``A`` counts as ``A``. In all,
    ``logit_a = p * log(max(max(|theta_a|, A) / max(m, A), f, A))``.

    The logits lie in ``[p * log(max(f, A)), 0]``, 0 at the largest entry, and they and their gradients are finite for
    every finite ``theta``. The gradient is the derivative of the logits as computed: ``p / theta_a`` in coordinate
    ``a`` away from the floors, plus ``-p / m`` through ``m`` on every logit above ``p * log(f)`` (a common shift, which
    the softmax cancels: log-probabilities get exactly the escort score), and nothing in a floored coordinate. Every
    partial derivative is at most ``p / max(A, f * m)`` in size.

    :param theta: Escort parameters, actions on the last dimension.
    :param p: Escort power, > 0.
    :param eps: Relative floor ``f`` in ``(0, 1)``.
    :return: Logits, same shape and dtype as ``theta``.
    """
    check_escort_params(p, eps)
    return _escort_logits(theta, p, eps)


def _escort_logits(theta: th.Tensor, p: float, eps: float) -> th.Tensor:
    """:func:`escort_logits` without the argument checks, in few kernels (``xlogy(p, x) = p * log(x)``)."""
    floor = scale_floor(theta.dtype)
    # in place only on results that no backward formula reads
    magnitude = th.abs(theta).clamp_min_(floor)
    scale = th.amax(magnitude, dim=-1, keepdim=True)
    return th.xlogy(p, th.div(magnitude, scale).clamp_min_(max(eps, floor)))


class EscortDistribution(CategoricalDistribution):
    """
    Categorical distribution for discrete actions under the escort transform:

    ``pi(a) = |theta_a|^p / sum_b |theta_b|^p``

    computed as a torch ``Categorical`` over the logits ``p * log(max(|theta| / max_b |theta_b|, eps))`` (see
    :func:`escort_logits`, which gives the floors and their bounds). The action net is SB3's linear layer; its output is
    ``theta``. The probabilities are exact to rounding at every scale of ``theta`` and invariant to it:
    ``pi(c * theta) = pi(theta)`` for ``c != 0``.

    :param action_dim: Number of discrete actions
    :param p: Escort power, > 0 (2 by default)
    :param eps: Relative floor ``f`` in ``(0, 1)``: a magnitude below ``f`` times the row's largest counts as that, so
        an exact zero has probability ``f^p`` at most instead of 0, an all-zero ``theta`` gives the uniform
        distribution, and no output or gradient is infinite.
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
        tell apart (both below the floor, or equal after rounding) are still ordered.

        :return: Actions
        """
        return th.argmax(th.abs(self.theta), dim=-1)
