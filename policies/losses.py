"""Classification losses for policy parameterizations: the escort counterpart of softmax cross-entropy."""

from typing import Literal

import torch as th
import torch.nn.functional as F

from policies.distributions import DEFAULT_EPS, escort_logits

Reduction = Literal["none", "mean", "sum"]

_REDUCTIONS = ("none", "mean", "sum")


def escort_cross_entropy(
    theta: th.Tensor,
    target: th.Tensor,
    p: float = 2.0,
    eps: float = DEFAULT_EPS,
    reduction: Reduction = "mean",
) -> th.Tensor:
    """
    Escort cross-entropy: ``-log pi(target | theta)`` with ``pi(a) = |theta_a|^p / sum_b |theta_b|^p``.

    Computed in log space as the softmax cross-entropy of :func:`policies.distributions.escort_logits`, so it equals
    ``-EscortDistribution(p, eps).log_prob(target)`` to rounding. It is exact to rounding at every scale of ``theta``
    (it depends on the ratios ``|theta_a| / max_b |theta_b|`` only: scale invariant and sign blind), finite for every
    finite ``theta`` (an all-zero row is the uniform distribution, loss ``log K``) and never overflows for huge magnitudes.
    Away from zero its gradient is

    ``d loss / d theta = -(p / theta_y) e_y + p * sign(theta) * |theta|^(p-1) / ||theta||_p^p``

    A ratio below the relative floor ``eps`` counts as ``eps`` and gets no gradient (a zero target's loss is finite:
    ``-p * log(eps)`` plus at most ``log K``); :func:`policies.distributions.escort_logits` gives the floors and bounds.

    :param theta: Escort parameters: ``(N, K)`` for a batch, or ``(K,)`` for one example.
    :param target: Class indices: ``(N,)`` integers in ``[0, K)``, or a 0-d tensor for one example.
    :param p: Escort power, > 0.
    :param eps: Relative floor ``f`` in ``(0, 1)`` (the rule of :func:`policies.distributions.escort_logits`).
    :param reduction: ``"none"`` (one loss per example), ``"mean"`` or ``"sum"`` over the batch, as in torch's losses.
    :return: The loss: a scalar, or ``(N,)`` for ``reduction="none"``.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return F.cross_entropy(escort_logits(theta, p, eps), target, reduction=reduction)
