"""Tabular policy parameterizations for exact policy gradient, and the optimizers of their parameter tables.

A parameterization turns a ``(S, A)`` table ``theta`` into a policy ``softmax(z(theta))`` with elementwise logits ``z``
and says how a gradient step moves it: softmax (``z = theta``), escort (``z = p * log(|theta| + eps)``), GNPG (the
softmax gradient over its L2 norm) and NeuRD (the advantage itself, gated by the logit threshold). ``SGD`` and ``Adam``
step the table along a direction. ``agents.exact_pg.ExactPG`` combines them with exact policy evaluation.
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


class Parameterization:
    """How parameters ``theta`` (``(S, A)``) give a policy: logits ``z(theta)`` applied elementwise, then a softmax."""

    def probs(self, theta: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` parameters.
        :return: ``(S, A)`` probabilities."""
        raise NotImplementedError

    def logit_slope(self, theta: np.ndarray) -> np.ndarray | float:
        """:param theta: ``(S, A)`` parameters.
        :return: ``dz/dtheta`` elementwise."""
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
        :param advantage: ``(S, A)`` advantages ``Q - V`` of their policy.
        :param grad: ``(S, A)`` exact gradient of ``V(rho)``.
        :return: the ascent direction (by default the gradient itself)."""
        return grad


class SoftmaxParameterization(Parameterization):
    """``pi(.|s) = softmax(theta_s)``; the same initial policy ``pi0`` has ``theta = log pi0``."""

    def probs(self, theta: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` logits.
        :return: ``(S, A)`` probabilities."""
        return softmax(theta)

    def logit_slope(self, theta: np.ndarray) -> np.ndarray | float:
        """:param theta: ``(S, A)`` logits.
        :return: 1."""
        return 1.0

    def from_probs(self, pi: np.ndarray) -> np.ndarray:
        """:param pi: ``(S, A)`` strictly positive probabilities.
        :return: ``log pi``."""
        return np.log(pi)


class GnpgParameterization(SoftmaxParameterization):
    """Softmax logits moved along the normalised gradient ``g / ||g||_2`` (Mei et al., 2021)."""

    def direction(self, theta: np.ndarray, advantage: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` logits.
        :param advantage: ``(S, A)`` advantages (unused).
        :param grad: ``(S, A)`` exact softmax gradient.
        :return: ``grad / ||grad||_2`` (0 where the gradient is 0)."""
        norm = np.linalg.norm(grad)
        return grad / norm if norm > 0 else grad


class EscortParameterization(Parameterization):
    """
    ``pi(a|s) = |theta_sa|^p / ||theta_s||_p^p``, computed as the softmax of ``p * log(|theta| + eps)``.

    The initial policy ``pi0`` has ``theta = pi0^(1/p)`` (unit p-norm, every entry positive).

    :param p: escort power, > 0.
    :param normalize: renormalise every ``theta_s`` to unit p-norm after each step.
    :param eps: floor added to ``|theta|``, the rule of :func:`policies.escort_logits`.
    """

    def __init__(self, p: float, normalize: bool, eps: float) -> None:
        self.p = p
        self.normalize = normalize
        self.eps = eps

    def probs(self, theta: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` escort parameters.
        :return: ``(S, A)`` probabilities."""
        return softmax(self.p * np.log(np.abs(theta) + self.eps))

    def logit_slope(self, theta: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` escort parameters.
        :return: ``p * sign(theta) / (|theta| + eps)``."""
        return self.p * np.sign(theta) / (np.abs(theta) + self.eps)

    def from_probs(self, pi: np.ndarray) -> np.ndarray:
        """:param pi: ``(S, A)`` probabilities.
        :return: ``pi^(1/p)``."""
        return pi ** (1.0 / self.p)

    def project(self, theta: np.ndarray) -> np.ndarray:
        """:param theta: parameters after a step.
        :return: each row divided by its p-norm when ``normalize``, else ``theta``."""
        if not self.normalize:
            return theta
        norms = (np.abs(theta) ** self.p).sum(axis=1, keepdims=True) ** (1.0 / self.p)
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
        :param advantage: ``(S, A)`` advantages ``Q - V``.
        :param grad: ``(S, A)`` softmax gradient (unused: NeuRD drops the softmax Jacobian).
        :return: the advantages, zeroed where the threshold forbids the move."""
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


def make_parameterization(policy: str, p: float, normalize: bool, eps: float, beta: float) -> Parameterization:
    makers: dict[str, Callable[[], Parameterization]] = {
        "softmax": SoftmaxParameterization,
        "gnpg": GnpgParameterization,
        "neurd": lambda: NeurdParameterization(beta),
        "escort": lambda: EscortParameterization(p, normalize, eps),
    }
    return makers[policy]()
