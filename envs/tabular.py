"""Finite Markov decision processes in matrix form, and exact dynamic programming on them.

A :class:`TabularMDP` is the infinite-horizon discounted problem

    V^pi(s) = E[ sum_t gamma^t R(s_t, a_t) | s_0 = s ],   a_t ~ pi(.|s_t),   s_{t+1} ~ P(.|s_t, a_t)

with absorbing, reward-free terminal states whose value is 0. Time-limit truncation is not part of the model.

All solvers work on the non-terminal states only and use sparse LU factorisations: gridworld models have a handful of
successors per state-action pair, so one exact policy evaluation of a few hundred states costs well under a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

_ATOL = 1e-8


@dataclass(frozen=True, eq=False)
class TabularMDP:
    """
    A finite discounted MDP with ``S`` states and ``A`` actions.

    The arrays are copied to float64 (``terminal`` to bool) and made read-only.

    :param P: ``(S, A, S)`` transition probabilities ``P[s, a, s'] = Pr(s' | s, a)``; every ``P[s, a]`` sums to 1.
    :param R: ``(S, A)`` expected immediate reward of taking ``a`` in ``s``.
    :param terminal: ``(S,)`` bool; terminal states are absorbing (``P[s, a, s] = 1``) with zero reward.
    :param initial: ``(S,)`` start-state distribution ``rho``.
    :param gamma: discount factor in ``[0, 1)``.
    """

    P: np.ndarray
    R: np.ndarray
    terminal: np.ndarray
    initial: np.ndarray
    gamma: float = 0.99

    def __post_init__(self) -> None:
        for name, dtype in (("P", np.float64), ("R", np.float64), ("terminal", np.bool_), ("initial", np.float64)):
            array = np.array(getattr(self, name), dtype=dtype)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        object.__setattr__(self, "gamma", float(self.gamma))
        _check_shapes(self)
        _check_probabilities(self)
        _check_terminal(self)

    @property
    def n_states(self) -> int:
        """Number of states ``S``."""
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        """Number of actions ``A``."""
        return self.P.shape[1]

    @cached_property
    def _solver(self) -> _SparseSolver:
        return _SparseSolver(self)

    def __getstate__(self) -> dict[str, Any]:
        return {name: value for name, value in self.__dict__.items() if name != "_solver"}


def _check_shapes(mdp: TabularMDP) -> None:
    if mdp.P.ndim != 3 or mdp.P.shape[0] != mdp.P.shape[2] or mdp.P.shape[0] == 0 or mdp.P.shape[1] == 0:
        raise ValueError(f"P must have shape (S, A, S) with S, A >= 1, got {mdp.P.shape}")
    n_states, n_actions = mdp.P.shape[:2]
    expected = {"R": (n_states, n_actions), "terminal": (n_states,), "initial": (n_states,)}
    for name, shape in expected.items():
        if getattr(mdp, name).shape != shape:
            raise ValueError(f"{name} must have shape {shape} to match P {mdp.P.shape}, got {getattr(mdp, name).shape}")
    if not 0.0 <= mdp.gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {mdp.gamma}")


def _check_probabilities(mdp: TabularMDP) -> None:
    if not (np.all(np.isfinite(mdp.P)) and np.all(np.isfinite(mdp.R)) and np.all(np.isfinite(mdp.initial))):
        raise ValueError("P, R and initial must be finite")
    if np.any(mdp.P < 0):
        raise ValueError("P has negative transition probabilities")
    row_sums = mdp.P.sum(axis=2)
    bad = np.argwhere(np.abs(row_sums - 1.0) > _ATOL)
    if len(bad):
        s, a = bad[0]
        raise ValueError(f"every row P[s, a] must sum to 1; P[{s}, {a}] sums to {row_sums[s, a]!r}")
    if np.any(mdp.initial < 0) or abs(mdp.initial.sum() - 1.0) > _ATOL:
        raise ValueError(f"initial must be a probability distribution, it sums to {mdp.initial.sum()!r}")


def _check_terminal(mdp: TabularMDP) -> None:
    terminal = np.flatnonzero(mdp.terminal)
    if np.any(np.abs(mdp.P[terminal, :, terminal] - 1.0) > _ATOL):
        raise ValueError("terminal states must be absorbing: P[s, a, s] = 1 for every terminal s and action a")
    if np.any(mdp.R[terminal] != 0):
        raise ValueError("terminal states must have zero reward: R[s] = 0 for every terminal s")


class _SparseSolver:
    """
    Sparse pieces of an MDP shared by every solve, and the LU factorisation of the last policy seen.

    ``(I - gamma P_pi)`` restricted to the non-terminal states has a fixed sparsity pattern (the union over actions),
    so building it for a new policy only fills in the values of that pattern. The matrix is strictly diagonally dominant
    (``gamma < 1``), so its diagonal serves as the pivots, which keeps the factors sparse.

    :param mdp: the MDP.
    """

    def __init__(self, mdp: TabularMDP) -> None:
        self.gamma = mdp.gamma
        self.n_states, self.n_actions = mdp.n_states, mdp.n_actions
        self.live = np.flatnonzero(~mdp.terminal)
        self.dead = np.flatnonzero(mdp.terminal)
        self.P_flat = sp.csr_matrix(mdp.P.reshape(-1, self.n_states))
        P_live = mdp.P[np.ix_(self.live, np.arange(self.n_actions), self.live)]
        pattern = P_live.any(axis=1) | np.eye(len(self.live), dtype=bool)
        cols, self.rows = np.nonzero(pattern.T)
        self.indptr = np.searchsorted(cols, np.arange(len(self.live) + 1))
        self.weights = P_live[self.rows, :, cols]
        self.is_diagonal = (self.rows == cols).astype(np.float64)
        self.row_states = self.live[self.rows]
        self.P_live_dead = mdp.P[np.ix_(self.live, np.arange(self.n_actions), self.dead)]
        self._cache: tuple[np.ndarray, spla.SuperLU] | None = None

    def factorize(self, pi: np.ndarray) -> spla.SuperLU:
        """
        LU factorisation of ``(I - gamma P_pi)`` on the non-terminal states (the last one is reused).

        :param pi: ``(S, A)`` policy.
        :return: the factorisation.
        """
        cache = self._cache
        if cache is not None and np.array_equal(pi, cache[0]):
            return cache[1]
        data = self.is_diagonal - self.gamma * np.einsum("ka,ka->k", self.weights, pi[self.row_states])
        n_live = len(self.live)
        matrix = sp.csc_matrix((data, self.rows, self.indptr), shape=(n_live, n_live))
        lu = spla.splu(matrix, permc_spec="COLAMD", diag_pivot_thresh=0.0)
        self._cache = (pi.copy(), lu)
        return lu


def _check_policy(mdp: TabularMDP, pi: np.ndarray) -> np.ndarray:
    pi = np.asarray(pi, dtype=np.float64)
    if pi.shape != (mdp.n_states, mdp.n_actions):
        raise ValueError(f"pi must have shape (S, A) = {(mdp.n_states, mdp.n_actions)}, got {pi.shape}")
    live = ~mdp.terminal
    if np.any(pi[live] < 0) or np.any(np.abs(pi[live].sum(axis=1) - 1.0) > 1e-6):
        raise ValueError("every row pi[s] of a non-terminal state must be a probability distribution over actions")
    return pi


def _q_from_v(mdp: TabularMDP, V: np.ndarray) -> np.ndarray:
    solver = mdp._solver
    Q = mdp.R + mdp.gamma * (solver.P_flat @ V).reshape(mdp.n_states, mdp.n_actions)
    Q[mdp.terminal] = 0.0
    return Q


def value_iteration(mdp: TabularMDP, tol: float = 1e-10, max_iter: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """
    Optimal values by value iteration, ``V <- max_a [R + gamma P V]`` with ``V(terminal) = 0``.

    Iterates until the largest change of ``V`` in one sweep is below ``tol``; then ``||V - V*||_inf`` is at most
    ``tol * gamma / (1 - gamma)``.

    :param mdp: the MDP.
    :param tol: stopping threshold on ``max_s |V_{k+1}(s) - V_k(s)|``.
    :param max_iter: most sweeps before giving up.
    :return: ``(V*, Q*)`` with shapes ``(S,)`` and ``(S, A)``.
    :raises RuntimeError: if ``max_iter`` sweeps do not reach ``tol``.
    """
    if tol <= 0:
        raise ValueError(f"tol must be positive, got {tol}")
    V = np.zeros(mdp.n_states)
    for _ in range(max_iter):
        Q = _q_from_v(mdp, V)
        V_new = Q.max(axis=1)
        delta = np.max(np.abs(V_new - V))
        V = V_new
        if delta < tol:
            return V, _q_from_v(mdp, V)
    raise RuntimeError(f"value iteration did not reach tol={tol} in {max_iter} sweeps; raise max_iter or tol")


def policy_evaluation(mdp: TabularMDP, pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Exact values of a stochastic policy: solves ``(I - gamma P_pi) V = r_pi`` on the non-terminal states.

    :param mdp: the MDP.
    :param pi: ``(S, A)`` action probabilities; rows of terminal states are ignored.
    :return: ``(V^pi, Q^pi)`` with shapes ``(S,)`` and ``(S, A)``; both are 0 at terminal states.
    """
    pi = _check_policy(mdp, pi)
    solver = mdp._solver
    r_pi = np.einsum("sa,sa->s", pi[solver.live], mdp.R[solver.live])
    V = np.zeros(mdp.n_states)
    V[solver.live] = solver.factorize(pi).solve(r_pi)
    return V, _q_from_v(mdp, V)


def discounted_visitation(mdp: TabularMDP, pi: np.ndarray) -> np.ndarray:
    """
    Normalised discounted state visitation ``d = (1 - gamma) rho^T (I - gamma P_pi)^-1``.

    ``d(s) = (1 - gamma) sum_t gamma^t Pr(s_t = s | s_0 ~ rho, pi)``. Terminal states are absorbing, so they hold the
    mass that reached them and pass nothing on; ``d`` sums to 1.

    :param mdp: the MDP.
    :param pi: ``(S, A)`` action probabilities; rows of terminal states are ignored.
    :return: ``(S,)`` visitation distribution.
    """
    pi = _check_policy(mdp, pi)
    solver, gamma = mdp._solver, mdp.gamma
    d = np.empty(mdp.n_states)
    d_live = (1.0 - gamma) * solver.factorize(pi).solve(mdp.initial[solver.live], trans="T")
    d[solver.live] = d_live
    into_dead = np.einsum("s,sa,sad->d", d_live, pi[solver.live], solver.P_live_dead)
    d[solver.dead] = mdp.initial[solver.dead] + gamma / (1.0 - gamma) * into_dead
    return d
