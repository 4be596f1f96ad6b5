"""Tabular policy parameterizations for exact policy gradient, and the optimizers of their parameter tables.

A parameterization turns a ``(S, A)`` table ``theta`` into a policy ``softmax(z(theta))`` with elementwise logits ``z``
and says how a gradient step moves it: softmax (``z = theta``), escort (``pi = |theta|^p / ||theta||_p^p``, computed
exactly in float64), GNPG (the softmax gradient over its L2 norm) and NeuRD (the advantage itself, gated by the logit
threshold). Each gives the per-state gradient ``d(sum_a pi(a|s) Q(s, a))/dtheta_s = f(theta_s) * A(s, .)`` through its
:meth:`Parameterization.gradient_factor` ``f``; the caller weights it per state. ``SGD`` and ``Adam`` step the table
along a direction. ``agents.exact_pg.ExactPG`` combines them with exact policy evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """
    Row-wise softmax.

    :param logits: ``(S, A)`` logits.
    :return: ``(S, A)`` probabilities.
    """
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def relative_magnitudes(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Each row's magnitudes relative to its largest one, the scaling that keeps escort powers in range at any scale.

    :param theta: ``(S, A)`` parameters.
    :return: float64 ``|theta| / m`` (0 in a row of zeros) and ``(S, 1)`` ``m = max_a |theta_sa|``.
    """
    magnitude = np.abs(np.asarray(theta, dtype=np.float64))
    row_max = magnitude.max(axis=1, keepdims=True)
    return np.divide(magnitude, row_max, out=np.zeros_like(magnitude), where=row_max > 0), row_max


class Parameterization:
    """How parameters ``theta`` (``(S, A)``) give a policy: logits ``z(theta)`` applied elementwise, then a softmax."""

    def probs(self, theta: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` parameters.
        :return: ``(S, A)`` probabilities."""
        raise NotImplementedError

    def gradient_factor(self, theta: np.ndarray, pi: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` parameters.
        :param pi: ``(S, A)`` their probabilities.
        :return: ``f = pi * dz/dtheta`` elementwise: the gradient of ``sum_a pi(a|s) Q(s, a)`` in ``theta_s`` is
            ``f_s * A(s, .)``."""
        raise NotImplementedError

    def from_probs(self, pi: np.ndarray) -> np.ndarray:
        """:param pi: ``(S, A)`` strictly positive probabilities.
        :return: parameters whose policy is ``pi``."""
        raise NotImplementedError

    def project(self, theta: np.ndarray) -> np.ndarray:
        """:param theta: parameters after a step.
        :return: the parameters kept (by default ``theta`` itself)."""
        return theta

    def direction(self, theta: np.ndarray, advantage: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` parameters.
        :param advantage: ``(S, A)`` advantages ``Q - V`` of their policy, times the state weight.
        :param grad: ``(S, A)`` the gradient, with the same state weight (``d(s) / (1 - gamma)``: that of ``V(rho)``).
        :return: the ascent direction (by default the weighted gradient itself)."""
        return grad


class SoftmaxParameterization(Parameterization):
    """``pi(.|s) = softmax(theta_s)``; the same initial policy ``pi0`` has ``theta = log pi0``."""

    def probs(self, theta: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` logits.
        :return: ``(S, A)`` probabilities."""
        return softmax(theta)

    def gradient_factor(self, theta: np.ndarray, pi: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` logits.
        :param pi: ``(S, A)`` their probabilities.
        :return: ``pi`` (``dz/dtheta = 1``)."""
        return pi

    def from_probs(self, pi: np.ndarray) -> np.ndarray:
        """:param pi: ``(S, A)`` strictly positive probabilities.
        :return: ``log pi``."""
        return np.log(pi)


class GnpgParameterization(SoftmaxParameterization):
    """Softmax logits moved along the normalised gradient ``g / ||g||_2`` (Mei et al., 2021)."""

    def direction(self, theta: np.ndarray, advantage: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` logits.
        :param advantage: ``(S, A)`` weighted advantages (unused).
        :param grad: ``(S, A)`` weighted softmax gradient.
        :return: ``grad / ||grad||_2`` (0 where the gradient is 0)."""
        norm = np.linalg.norm(grad)
        return grad / norm if norm > 0 else grad


class EscortParameterization(Parameterization):
    """
    ``pi(a|s) = |theta_sa|^p / ||theta_s||_p^p``, computed exactly in float64.

    Each row is divided by its largest ``|theta|`` first, so the probabilities are exact to rounding at any scale of
    ``theta`` and scale invariant (``pi(c theta) = pi(theta)``); a row of zeros is uniform. The gradient factor is
    ``(p / ||theta_s||_p) * sign(theta) * pi^(1 - 1/p)`` (``= p * pi / theta``), and 0 at a coordinate that is exactly 0
    (where ``pi = 0``). The initial policy ``pi0`` has ``theta = pi0^(1/p)`` (unit p-norm, every entry positive).

    :param p: escort power, > 0.
    :param normalize: renormalise every ``theta_s`` to unit p-norm after each step.
    """

    def __init__(self, p: float, normalize: bool) -> None:
        self.p = p
        self.normalize = normalize

    def probs(self, theta: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` escort parameters.
        :return: ``(S, A)`` probabilities ``|theta|^p / ||theta||_p^p`` (uniform for a row of zeros)."""
        scaled, _ = relative_magnitudes(theta)
        powers = scaled**self.p
        total = powers.sum(axis=1, keepdims=True)
        return np.divide(powers, total, out=np.full_like(powers, 1.0 / theta.shape[1]), where=total > 0)

    def gradient_factor(self, theta: np.ndarray, pi: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` escort parameters.
        :param pi: ``(S, A)`` their probabilities (unused: the factor is computed from ``theta``, exactly).
        :return: ``(p / ||theta_s||_p) * sign(theta) * pi^(1 - 1/p)``, 0 where ``theta = 0``."""
        scaled, row_max = relative_magnitudes(theta)
        total = (scaled**self.p).sum(axis=1, keepdims=True)
        # pi^(1 - 1/p) / ||theta_s||_p = (|theta| / m)^(p - 1) / (m * sum_b (|theta_b| / m)^p)
        below = np.power(scaled, self.p - 1.0, out=np.zeros_like(scaled), where=scaled > 0)
        return self.p * np.sign(theta) * below / np.where(total > 0, row_max * total, 1.0)

    def from_probs(self, pi: np.ndarray) -> np.ndarray:
        """:param pi: ``(S, A)`` probabilities.
        :return: ``pi^(1/p)``."""
        return pi ** (1.0 / self.p)

    def project(self, theta: np.ndarray) -> np.ndarray:
        """:param theta: parameters after a step.
        :return: each row divided by its p-norm when ``normalize``, else ``theta``."""
        if not self.normalize:
            return theta
        scaled, row_max = relative_magnitudes(theta)
        norms = row_max * (scaled**self.p).sum(axis=1, keepdims=True) ** (1.0 / self.p)
        return theta / np.where(norms > 0, norms, 1.0)


class NeurdParameterization(SoftmaxParameterization):
    """
    Softmax logits moved along the thresholded advantages, kept mean-centred (as OpenSpiel's ``neurd.py`` centres
    them before thresholding).

    :param beta: the logit threshold, > 0 (``inf``: none).
    """

    def __init__(self, beta: float) -> None:
        self.beta = beta

    def direction(self, theta: np.ndarray, advantage: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` mean-centred logits.
        :param advantage: ``(S, A)`` advantages ``Q - V``, times the state weight.
        :param grad: ``(S, A)`` weighted softmax gradient (unused: NeuRD drops the softmax Jacobian).
        :return: the weighted advantages, zeroed where the threshold forbids the move."""
        return neurd_threshold(theta, advantage, self.beta)

    def from_probs(self, pi: np.ndarray) -> np.ndarray:
        """:param pi: ``(S, A)`` strictly positive probabilities.
        :return: mean-centred log-probabilities."""
        return self.project(np.log(pi))

    def project(self, theta: np.ndarray) -> np.ndarray:
        """:param theta: logits after a step.
        :return: the logits minus their row mean."""
        return theta - theta.mean(axis=1, keepdims=True)


def neurd_threshold(theta: np.ndarray, update: np.ndarray, beta: float) -> np.ndarray:
    """
    OpenSpiel's ``thresholded``: a logit may only increase while below ``beta`` and only decrease while above ``-beta``.

    :param theta: ``(S, A)`` mean-centred logits.
    :param update: ``(S, A)`` proposed update direction.
    :param beta: the threshold, > 0.
    :return: the update with the forbidden entries set to 0.
    """
    return np.where(theta < beta, np.maximum(update, 0.0), 0.0) + np.where(theta > -beta, np.minimum(update, 0.0), 0.0)


class SGD:
    """Plain gradient ascent: ``step = lr * direction``.

    :param learning_rate: step size ``eta``.
    """

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = learning_rate

    def step(self, direction: np.ndarray) -> np.ndarray:
        """:param direction: ascent direction.
        :return: the step to add to ``theta``."""
        return self.learning_rate * direction


class Adam:
    """Adam (Kingma and Ba, 2015) for ascent, with bias correction.

    :param learning_rate: step size.
    :param betas: decay rates of the first and second moments.
    :param eps: added to the root of the second moment.
    """

    def __init__(self, learning_rate: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.learning_rate = learning_rate
        self.betas = betas
        self.eps = eps
        self.t = 0
        self.m: np.ndarray | float = 0.0
        self.v: np.ndarray | float = 0.0

    def step(self, direction: np.ndarray) -> np.ndarray:
        """:param direction: ascent direction.
        :return: the step to add to ``theta``."""
        beta1, beta2 = self.betas
        self.t += 1
        self.m = beta1 * self.m + (1.0 - beta1) * direction
        self.v = beta2 * self.v + (1.0 - beta2) * direction**2
        m_hat = self.m / (1.0 - beta1**self.t)
        v_hat = self.v / (1.0 - beta2**self.t)
        return self.learning_rate * m_hat / (np.sqrt(v_hat) + self.eps)


def make_parameterization(policy: str, p: float, normalize: bool, beta: float) -> Parameterization:
    """
    :param policy: ``softmax``, ``gnpg``, ``neurd`` or ``escort``.
    :param p: escort power (escort only).
    :param normalize: renormalise escort parameters after each step (escort only).
    :param beta: NeuRD logit threshold (NeuRD only).
    :return: the parameterization.
    """
    makers: dict[str, Callable[[], Parameterization]] = {
        "softmax": SoftmaxParameterization,
        "gnpg": GnpgParameterization,
        "neurd": lambda: NeurdParameterization(beta),
        "escort": lambda: EscortParameterization(p, normalize),
    }
    return makers[policy]()
