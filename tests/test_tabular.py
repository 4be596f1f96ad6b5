"""Properties of TabularMDP and the exact solvers: Bellman equations, visitation identities, input checks."""

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.tabular import TabularMDP, discounted_visitation, policy_evaluation, value_iteration


def random_mdp(seed: int, n_states: int = 7, n_actions: int = 3, gamma: float = 0.9, n_terminal: int = 2) -> TabularMDP:
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(n_states, 0.3), size=(n_states, n_actions))
    R = rng.normal(size=(n_states, n_actions))
    terminal = np.zeros(n_states, dtype=bool)
    terminal[rng.choice(n_states, size=n_terminal, replace=False)] = True
    for s in np.flatnonzero(terminal):
        P[s] = 0.0
        P[s, :, s] = 1.0
        R[s] = 0.0
    initial = rng.dirichlet(np.ones(n_states))
    return TabularMDP(P=P, R=R, terminal=terminal, initial=initial, gamma=gamma)


def random_policy(mdp: TabularMDP, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(mdp.n_actions), size=mdp.n_states)


def policy_matrix(mdp: TabularMDP, pi: np.ndarray) -> np.ndarray:
    return np.einsum("sa,sat->st", pi, mdp.P)


def dense_values(mdp: TabularMDP, pi: np.ndarray) -> np.ndarray:
    """Reference: solve the full system with the terminal rows cut off, by a dense solver."""
    P_pi = policy_matrix(mdp, pi)
    P_pi[mdp.terminal] = 0.0
    r_pi = np.where(mdp.terminal, 0.0, (pi * mdp.R).sum(axis=1))
    return np.linalg.solve(np.eye(mdp.n_states) - mdp.gamma * P_pi, r_pi)


mdp_params = st.tuples(
    st.integers(0, 2**31 - 1), st.integers(2, 9), st.integers(1, 4), st.floats(0.0, 0.99), st.integers(0, 2)
)


@settings(max_examples=40, deadline=None)
@given(params=mdp_params)
def test_value_iteration_satisfies_bellman_optimality(params: tuple[int, int, int, float, int]) -> None:
    seed, n_states, n_actions, gamma, n_terminal = params
    mdp = random_mdp(seed, n_states, n_actions, gamma, min(n_terminal, n_states - 1))
    V, Q = value_iteration(mdp)
    error_bound = 1e-10 * gamma / (1 - gamma) + 1e-10
    backup = mdp.R + mdp.gamma * mdp.P @ V
    np.testing.assert_allclose(Q[~mdp.terminal], backup[~mdp.terminal], atol=1e-9)
    np.testing.assert_allclose(V, np.where(mdp.terminal, 0.0, Q.max(axis=1)), atol=1e-9)
    assert np.all(V[mdp.terminal] == 0) and np.all(Q[mdp.terminal] == 0)
    V_greedy, _ = policy_evaluation(mdp, np.eye(n_actions)[Q.argmax(axis=1)])
    np.testing.assert_allclose(V_greedy, V, atol=error_bound)
    V_other, _ = policy_evaluation(mdp, random_policy(mdp, seed + 1))
    assert np.all(V_other <= V + error_bound)


@settings(max_examples=40, deadline=None)
@given(params=mdp_params)
def test_policy_evaluation_satisfies_bellman_equation(params: tuple[int, int, int, float, int]) -> None:
    seed, n_states, n_actions, gamma, n_terminal = params
    mdp = random_mdp(seed, n_states, n_actions, gamma, min(n_terminal, n_states - 1))
    pi = random_policy(mdp, seed)
    V, Q = policy_evaluation(mdp, pi)
    live = ~mdp.terminal
    np.testing.assert_allclose(Q[live], (mdp.R + mdp.gamma * mdp.P @ V)[live], atol=1e-10)
    np.testing.assert_allclose(V[live], (pi * Q).sum(axis=1)[live], atol=1e-10)
    np.testing.assert_allclose(V, dense_values(mdp, pi), atol=1e-9)
    assert np.all(V[mdp.terminal] == 0) and np.all(Q[mdp.terminal] == 0)


@settings(max_examples=40, deadline=None)
@given(params=mdp_params)
def test_discounted_visitation_is_the_normalised_discounted_occupancy(params: tuple[int, int, int, float, int]) -> None:
    seed, n_states, n_actions, gamma, n_terminal = params
    mdp = random_mdp(seed, n_states, n_actions, gamma, min(n_terminal, n_states - 1))
    pi = random_policy(mdp, seed)
    d = discounted_visitation(mdp, pi)
    P_pi = policy_matrix(mdp, pi)
    assert d.sum() == pytest.approx(1.0, abs=1e-10)
    assert np.all(d >= -1e-12)
    np.testing.assert_allclose(d, (1 - gamma) * mdp.initial + gamma * d @ P_pi, atol=1e-10)
    reference = (1 - gamma) * np.linalg.solve((np.eye(n_states) - gamma * P_pi).T, mdp.initial)
    np.testing.assert_allclose(d, reference, atol=1e-10)


def test_discounted_visitation_matches_the_series() -> None:
    mdp = random_mdp(3, gamma=0.8)
    pi = random_policy(mdp, 4)
    P_pi = policy_matrix(mdp, pi)
    occupancy, series = mdp.initial.copy(), np.zeros(mdp.n_states)
    for t in range(400):
        series += (1 - mdp.gamma) * mdp.gamma**t * occupancy
        occupancy = occupancy @ P_pi
    np.testing.assert_allclose(discounted_visitation(mdp, pi), series, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_performance_difference_lemma(seed: int) -> None:
    """V^pi'(rho) - V^pi(rho) = 1/(1-gamma) sum_s d^pi'(s) sum_a pi'(a|s) (Q^pi(s,a) - V^pi(s))."""
    mdp = random_mdp(seed, n_states=9, gamma=0.95)
    pi, pi_new = random_policy(mdp, 100 + seed), random_policy(mdp, 200 + seed)
    V, Q = policy_evaluation(mdp, pi)
    V_new, _ = policy_evaluation(mdp, pi_new)
    d_new = discounted_visitation(mdp, pi_new)
    advantage = np.einsum("s,sa,sa->", d_new, pi_new, Q - V[:, None]) / (1 - mdp.gamma)
    assert mdp.initial @ (V_new - V) == pytest.approx(advantage, abs=1e-10)


def test_reusing_and_replacing_the_factorisation_gives_fresh_answers() -> None:
    mdp = random_mdp(7)
    pi_a, pi_b = random_policy(mdp, 1), random_policy(mdp, 2)
    for pi in (pi_a, pi_b, pi_a):
        np.testing.assert_allclose(policy_evaluation(mdp, pi)[0], dense_values(mdp, pi), atol=1e-10)
    pi = pi_a.copy()
    policy_evaluation(mdp, pi)
    pi[:] = pi_b
    np.testing.assert_allclose(policy_evaluation(mdp, pi)[0], dense_values(mdp, pi_b), atol=1e-10)


def test_pickles_after_solving() -> None:
    mdp = random_mdp(5)
    pi = random_policy(mdp, 5)
    V, _ = policy_evaluation(mdp, pi)
    copy = pickle.loads(pickle.dumps(mdp))
    np.testing.assert_array_equal(copy.P, mdp.P)
    np.testing.assert_allclose(policy_evaluation(copy, pi)[0], V, atol=1e-12)


def test_one_state_chain_has_the_geometric_value() -> None:
    mdp = TabularMDP(P=np.ones((1, 1, 1)), R=np.ones((1, 1)), terminal=np.zeros(1, bool), initial=np.ones(1), gamma=0.9)
    V, Q = value_iteration(mdp)
    assert V[0] == pytest.approx(10.0, abs=1e-8)
    assert policy_evaluation(mdp, np.ones((1, 1)))[0][0] == pytest.approx(10.0, abs=1e-12)
    assert discounted_visitation(mdp, np.ones((1, 1)))[0] == pytest.approx(1.0)


def test_arrays_are_copied_to_read_only_float64() -> None:
    P = np.ones((1, 2, 1), dtype=np.float32)
    mdp = TabularMDP(P=P, R=np.zeros((1, 2), np.float32), terminal=[False], initial=[1.0])
    assert mdp.P.dtype == np.float64 and mdp.terminal.dtype == np.bool_
    assert (mdp.n_states, mdp.n_actions) == (1, 2)
    P[0, 0, 0] = 5.0
    assert mdp.P[0, 0, 0] == 1.0
    with pytest.raises(ValueError):
        mdp.P[0, 0, 0] = 2.0


def valid_arrays() -> dict:
    P = np.zeros((2, 2, 2))
    P[0, :, 1] = 1.0
    P[1, :, 1] = 1.0
    return {
        "P": P,
        "R": np.array([[1.0, 0.0], [0.0, 0.0]]),
        "terminal": np.array([False, True]),
        "initial": np.array([1.0, 0.0]),
    }


@pytest.mark.parametrize(
    "change, message",
    [
        ({"P": np.ones((2, 2))}, "shape"),
        ({"R": np.zeros((2, 3))}, "R must have shape"),
        ({"terminal": np.zeros(3, bool)}, "terminal must have shape"),
        ({"initial": np.array([0.5, 0.2])}, "initial must be a probability distribution"),
        ({"gamma": 1.0}, "gamma"),
        ({"gamma": -0.1}, "gamma"),
        ({"R": np.array([[1.0, 0.0], [0.0, 3.0]])}, "zero reward"),
        ({"R": np.array([[np.nan, 0.0], [0.0, 0.0]])}, "finite"),
    ],
)
def test_invalid_mdps_are_rejected(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TabularMDP(**{**valid_arrays(), **change})


def test_rows_must_sum_to_one_and_be_non_negative() -> None:
    arrays = valid_arrays()
    arrays["P"][0, 1] = [0.7, 0.2]
    with pytest.raises(ValueError, match=r"P\[0, 1\] sums to"):
        TabularMDP(**arrays)
    arrays["P"][0, 1] = [-0.5, 1.5]
    with pytest.raises(ValueError, match="negative"):
        TabularMDP(**arrays)


def test_terminal_states_must_be_absorbing() -> None:
    arrays = valid_arrays()
    arrays["P"][1, 0] = [1.0, 0.0]
    with pytest.raises(ValueError, match="absorbing"):
        TabularMDP(**arrays)


def test_invalid_policies_and_budgets_are_rejected() -> None:
    mdp = TabularMDP(**valid_arrays())
    with pytest.raises(ValueError, match="shape"):
        policy_evaluation(mdp, np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="probability distribution"):
        discounted_visitation(mdp, np.array([[0.9, 0.2], [0.5, 0.5]]))
    with pytest.raises(RuntimeError, match="max_iter"):
        value_iteration(random_mdp(0, gamma=0.99), tol=1e-12, max_iter=3)
    with pytest.raises(ValueError, match="tol"):
        value_iteration(mdp, tol=0.0)
