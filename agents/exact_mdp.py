"""The MDP side of exact policy gradient: an env's tabular model, start distributions, exact policy evaluators, the
best and second-best actions of a Q table, and the best value of policies that avoid given states."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.tabular import TabularMDP, discounted_visitation, policy_evaluation, value_iteration


@dataclass(frozen=True)
class Evaluation:
    """
    Exact quantities of one policy.

    :param pi: ``(S, A)`` action probabilities.
    :param V: ``(S,)`` state values ``V^pi``.
    :param Q: ``(S, A)`` action values ``Q^pi``.
    :param d: ``(S,)`` normalised discounted state visitation ``d^pi_rho``.
    :param value: ``V^pi(rho)``.
    """

    pi: np.ndarray
    V: np.ndarray
    Q: np.ndarray
    d: np.ndarray
    value: float

    @property
    def advantage(self) -> np.ndarray:
        """``A(s, a) = Q(s, a) - V(s)``."""
        return self.Q - self.V[:, None]


def as_mdp(env: Any) -> TabularMDP:
    """
    The tabular model of an env, or the MDP itself.

    :param env: a :class:`envs.TabularMDP` or an env whose ``unwrapped`` has ``transition_model()``.
    :return: the MDP.
    :raises ValueError: if ``env`` has no transition model.
    """
    if isinstance(env, TabularMDP):
        return env
    model = getattr(getattr(env, "unwrapped", env), "transition_model", None)
    if not callable(model):
        name = getattr(getattr(env, "spec", None), "id", None) or type(env).__name__
        raise ValueError(
            f"{name} has no transition_model(): exact policy gradients need a tabular env such as Bandit-v0 or FourRooms-v0"
        )
    return model()


def uniform_start(mdp: TabularMDP) -> TabularMDP:
    """
    :param mdp: an MDP with at least one non-terminal state.
    :return: the same MDP started uniformly at random in a non-terminal state.
    """
    live = ~mdp.terminal
    return dataclasses.replace(mdp, initial=live / live.sum())


def is_one_step(mdp: TabularMDP) -> bool:
    """
    Whether every episode lasts one step (a bandit or contextual bandit): no non-terminal state leads to another.

    :param mdp: the MDP.
    :return: ``True`` if ``P[s, a, s'] = 0`` for all non-terminal ``s`` and ``s'``.
    """
    live = ~mdp.terminal
    return not np.any(mdp.P[np.ix_(live, np.ones(mdp.n_actions, dtype=bool), live)])


Evaluator = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def linear_solve_evaluator(mdp: TabularMDP) -> Evaluator:
    """Any MDP: ``V`` and ``Q`` by one sparse LU solve of ``I - gamma P_pi``, and the discounted visitation."""

    def evaluate(pi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        V, Q = policy_evaluation(mdp, pi)
        return V, Q, discounted_visitation(mdp, pi)

    return evaluate


def one_step_evaluator(mdp: TabularMDP) -> Evaluator:
    """In a one-step MDP ``Q = R``, ``V = pi . R`` and ``d = (1 - gamma) rho`` on the non-terminal states."""
    live = ~mdp.terminal
    Q = np.where(live[:, None], mdp.R, 0.0)
    reach = mdp.gamma / (1.0 - mdp.gamma) * mdp.P[live][:, :, ~live]
    d_live = (1.0 - mdp.gamma) * np.where(live, mdp.initial, 0.0)

    def evaluate(pi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        V = np.einsum("sa,sa->s", pi, Q)
        d = d_live.copy()
        d[~live] = mdp.initial[~live] + np.einsum("s,sa,sat->t", d_live[live], pi[live], reach)
        return V, Q, d

    return evaluate


def _near_top(Q: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    top = Q.max(axis=1, keepdims=True)
    return Q >= top - tol * np.maximum(1.0, np.abs(top))


def best_actions(Q: np.ndarray) -> np.ndarray:
    """:param Q: ``(S, A)`` action values
    :return: ``(S,)`` the first action of each state whose value is the top one (within a relative 1e-9)"""
    return _near_top(Q).argmax(axis=1)


def second_best_actions(Q: np.ndarray, best: np.ndarray) -> np.ndarray:
    """:param Q: ``(S, A)`` action values
    :param best: ``(S,)`` the best actions
    :return: ``(S,)`` the best action below the top value in each state (``best + 1`` where all actions tie)"""
    n_actions = Q.shape[1]
    suboptimal = ~_near_top(Q)
    masked = np.where(suboptimal, Q, -np.inf)
    fallback = (best + 1) % n_actions
    return np.where(suboptimal.any(axis=1), masked.argmax(axis=1), fallback)


def best_value_avoiding(mdp: TabularMDP, avoid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    The optimal values over the policies that never enter the states ``avoid``.

    An action is allowed in a state if it leads, with certainty, to states from which ``avoid`` can be kept out of for
    ever (the largest such set, by elimination). Value iteration then runs on the MDP in which every other action is
    replaced by a self-loop that pays less than any reward of the MDP: such an action is never optimal where an allowed
    one exists, so the values are those of the best avoiding policy. In FourRooms-v0, avoiding the terminal state that
    the optimal policy reaches (the goal with both sub-goals collected) gives the best policy that takes any other route.

    :param mdp: the MDP.
    :param avoid: ``(S,)`` bool, the states never to enter.
    :return: ``(S,)`` values (``-inf`` where ``avoid`` cannot be avoided) and ``(S, A)`` action values (``-inf`` for
        actions that are not allowed).
    """
    allowed = avoiding_actions(mdp, avoid)
    kept = allowed | mdp.terminal[:, None]
    self_loops = np.eye(mdp.n_states)[:, None, :]
    penalty = -(np.abs(mdp.R).max() + 1.0)
    restricted = dataclasses.replace(mdp, P=np.where(kept[:, :, None], mdp.P, self_loops), R=np.where(kept, mdp.R, penalty))
    V, Q = value_iteration(restricted)
    return np.where(allowed.any(axis=1), V, -np.inf), np.where(allowed, Q, -np.inf)


def avoiding_actions(mdp: TabularMDP, avoid: np.ndarray) -> np.ndarray:
    """
    :param mdp: the MDP.
    :param avoid: ``(S,)`` bool, the states never to enter.
    :return: ``(S, A)`` bool: the actions after which ``avoid`` can be kept out of for ever, with certainty.
    """
    blocked = np.asarray(avoid, dtype=bool)
    while True:
        allowed = ~np.any(mdp.P[:, :, blocked] > 0, axis=2)
        grown = blocked | ~allowed.any(axis=1)
        if np.array_equal(grown, blocked):
            return allowed & ~blocked[:, None]
        blocked = grown
