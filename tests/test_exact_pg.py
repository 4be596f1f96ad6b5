"""ExactPG: exact gradients against finite differences, the exact escort, state weightings, policy evaluation against
Monte-Carlo rollouts, the FourRooms escape threshold, the runner."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th

import envs  # noqa: F401  (registers the envs)
from agents.exact_mdp import avoiding_actions, best_value_avoiding, is_one_step, uniform_start
from agents.exact_pg import STATE_WEIGHTINGS, ExactPG
from agents.tabular_policies import EscortParameterization, neurd_threshold
from envs.make import env_family
from envs.tabular import TabularMDP, discounted_visitation, policy_evaluation, value_iteration
from experiments.cli import main
from experiments.config import RunConfig, load_yaml
from experiments.errors import UsageError
from experiments.exact_run import build_agent, curve_indices
from experiments.hyperparams import load_hyperparams
from experiments.results import read_metrics
from experiments.run import run

th.set_num_threads(1)

POLICIES = [("softmax", {}), ("escort", {"p": 2.0}), ("escort", {"p": 3.0, "normalize": False}), ("neurd", {}), ("gnpg", {})]
ENV_IDS = ["Bandit-v0", "FourRooms-v0"]


@pytest.fixture(scope="module")
def mdps() -> dict:
    return {env_id: gym.make(env_id).unwrapped.transition_model() for env_id in ENV_IDS}


def _fd(agent: ExactPG, theta: np.ndarray, direction: np.ndarray, h: float) -> float:
    return (agent.objective(theta + h * direction) - agent.objective(theta - h * direction)) / (2 * h)


def _coordinates(agent: ExactPG, theta: np.ndarray, n_states: int) -> list[tuple[int, int]]:
    states = np.argsort(-agent.evaluate(theta).d * ~agent.mdp.terminal)[:n_states]
    return [(int(s), a) for s in states for a in range(agent.mdp.n_actions)]


def _random_theta(agent: ExactPG, seed: int) -> np.ndarray:
    theta = agent.theta.copy()
    if agent.policy_name == "escort":
        signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=theta.shape)
        theta *= signs
    return theta


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize(("policy", "kwargs"), POLICIES)
def test_gradient_matches_finite_differences(mdps: dict, env_id: str, policy: str, kwargs: dict) -> None:
    agent = ExactPG(mdps[env_id], policy=policy, init="random", seed=1, **kwargs)
    theta = _random_theta(agent, seed=2)
    grad = agent.gradient(theta)
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 1e-4
    h = 1e-6
    unit = np.zeros_like(theta)
    for s, a in _coordinates(agent, theta, n_states=8):
        unit[:] = 0.0
        unit[s, a] = 1.0
        assert grad[s, a] == pytest.approx(_fd(agent, theta, unit, h), rel=1e-5, abs=1e-8 * np.abs(grad).max())
    rng = np.random.default_rng(3)
    for _ in range(3):
        direction = rng.standard_normal(theta.shape)
        assert np.sum(grad * direction) == pytest.approx(_fd(agent, theta, direction, h), rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_escort_gradient_is_the_closed_form_and_scale_covariant(mdps: dict, env_id: str) -> None:
    p = 2.5
    agent = ExactPG(mdps[env_id], policy="escort", p=p, init="random", seed=4)
    theta = _random_theta(agent, seed=5)
    ev = agent.evaluate(theta)
    norm = (np.abs(theta) ** p).sum(axis=1, keepdims=True) ** (1 / p)
    closed_form = ev.d[:, None] / (1 - agent.mdp.gamma) * (p / norm) * np.sign(theta) * ev.pi ** (1 - 1 / p) * ev.advantage
    np.testing.assert_allclose(agent.gradient(theta), closed_form, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(agent.gradient(theta), ev.d[:, None] / (1 - agent.mdp.gamma) * p * ev.pi / theta * ev.advantage)
    np.testing.assert_allclose(agent.policy(3.0 * theta), ev.pi, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(agent.gradient(3.0 * theta), agent.gradient(theta) / 3.0, rtol=1e-12, atol=1e-15)
    assert np.abs(np.sum(agent.gradient(theta) * theta, axis=1)).max() < 1e-12


def _escort_reference(theta: np.ndarray, p: float) -> np.ndarray:
    """The escort formula at unit scale, in extended precision."""
    powers = np.abs(theta.astype(np.longdouble)) ** p
    return (powers / powers.sum(axis=1, keepdims=True)).astype(np.float64)


@pytest.mark.parametrize("p", [0.5, 1.0, 2.0, 4.0])
def test_exact_escort_is_exact_and_scale_invariant_from_1e_minus_12_to_1e12(p: float) -> None:
    escort = EscortParameterization(p, normalize=True)
    rng = np.random.default_rng(13)
    theta = rng.uniform(0.05, 1.0, size=(6, 4)) * rng.choice([-1.0, 1.0], size=(6, 4))
    theta[1] = [1.0, 1e-3, 1e-6, -1e-9]
    reference = _escort_reference(theta, p)
    for scale in 10.0 ** np.arange(-12, 13, 3):
        pi = escort.probs(scale * theta)
        np.testing.assert_allclose(pi, reference, rtol=1e-14, atol=0.0)
        np.testing.assert_allclose(pi.sum(axis=1), 1.0, rtol=1e-15)
        np.testing.assert_allclose(
            escort.gradient_factor(scale * theta, pi) * scale, escort.gradient_factor(theta, pi), rtol=1e-13
        )
    np.testing.assert_allclose(escort.project(1e12 * theta), escort.project(theta), rtol=1e-14)
    np.testing.assert_allclose((np.abs(escort.project(1e-12 * theta)) ** p).sum(axis=1), 1.0, rtol=1e-14)


@pytest.mark.parametrize("p", [0.5, 1.0, 2.0, 3.0])
def test_escort_zero_coordinate_has_zero_probability_and_gradient(mdps: dict, p: float) -> None:
    agent = ExactPG(mdps["FourRooms-v0"], policy="escort", p=p, init="random", seed=6)
    theta = _random_theta(agent, seed=7)
    s0 = agent.start_state
    theta[s0, 1] = 0.0
    theta[agent.mdp.terminal] = 0.0
    ev = agent.evaluate(theta)
    grad, direction = agent.gradient(theta), agent.update_direction(theta)
    assert np.all(np.isfinite(ev.pi)) and np.all(np.isfinite(grad)) and np.all(np.isfinite(direction))
    assert ev.pi[s0, 1] == 0.0 and grad[s0, 1] == 0.0 and direction[s0, 1] == 0.0
    np.testing.assert_allclose(ev.pi[agent.mdp.terminal], 0.25)
    assert np.all(grad[agent.mdp.terminal] == 0.0)
    others = [a for a in range(4) if a != 1]
    reference = _escort_reference(theta[s0 : s0 + 1, others], p)[0]
    np.testing.assert_allclose(ev.pi[s0, others], reference, rtol=1e-14)
    assert np.abs(grad[s0, others]).max() > 0


def test_gnpg_direction_is_the_unit_softmax_gradient(mdps: dict) -> None:
    agent = ExactPG(mdps["FourRooms-v0"], policy="gnpg", init="random", seed=8, learning_rate=0.5)
    grad = agent.gradient()
    direction = agent.update_direction()
    np.testing.assert_allclose(direction, grad / np.linalg.norm(grad), rtol=1e-12)
    theta0 = agent.theta.copy()
    agent.learn(1)
    assert np.linalg.norm(agent.theta - theta0) == pytest.approx(0.5)


@pytest.mark.parametrize("state_weighting", ["visitation", "uniform"])
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_neurd_update_is_the_thresholded_weighted_advantage_formula(mdps: dict, env_id: str, state_weighting: str) -> None:
    eta, beta = 0.7, 1.0
    agent = ExactPG(mdps[env_id], policy="neurd", learning_rate=eta, beta=beta, state_weighting=state_weighting)
    theta = np.random.default_rng(9).normal(scale=2.0, size=agent.theta.shape)
    theta[0, :3] = [2.5, -0.5, -2.0]
    theta -= theta.mean(axis=1, keepdims=True)
    agent.theta = theta.copy()
    assert np.abs(theta.mean(axis=1)).max() < 1e-12
    assert np.any(theta > beta) and np.any(theta < -beta)
    ev = agent.evaluate()
    advantage = ev.Q - ev.V[:, None]
    weight = ev.d / (1 - agent.mdp.gamma) if state_weighting == "visitation" else np.ones(len(ev.d))
    expected_step = np.zeros_like(theta)
    for s in range(theta.shape[0]):
        for a in range(theta.shape[1]):
            allowed = (advantage[s, a] > 0 and theta[s, a] < beta) or (advantage[s, a] < 0 and theta[s, a] > -beta)
            expected_step[s, a] = eta * weight[s] * advantage[s, a] if allowed else 0.0
    expected = theta + expected_step
    expected -= expected.mean(axis=1, keepdims=True)
    agent.learn(1)
    np.testing.assert_allclose(agent.theta, expected, rtol=1e-12, atol=1e-15)
    assert np.any(expected_step != 0) and np.any((expected_step == 0) & (advantage != 0))


def _weighted_agents(mdp: TabularMDP, policy: str, **kwargs: float) -> tuple[ExactPG, ExactPG, np.ndarray]:
    visitation, uniform = (
        ExactPG(mdp, policy=policy, state_weighting=w, init="random", seed=14, **kwargs) for w in STATE_WEIGHTINGS
    )
    theta = _random_theta(visitation, seed=15)
    visitation.theta, uniform.theta = theta.copy(), theta.copy()
    return visitation, uniform, theta


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize(("policy", "kwargs"), [("softmax", {}), ("escort", {"p": 2.0}), ("escort", {"p": 3.0})])
def test_uniform_weighting_divides_each_state_of_the_gradient_by_its_visitation(
    mdps: dict, env_id: str, policy: str, kwargs: dict
) -> None:
    visitation, uniform, theta = _weighted_agents(mdps[env_id], policy, **kwargs)
    assert visitation.state_weighting == "visitation" == ExactPG(mdps[env_id]).state_weighting
    ev = visitation.evaluate()
    weight = ev.d / (1 - visitation.mdp.gamma)
    np.testing.assert_allclose(visitation.state_weights(ev), weight)
    np.testing.assert_array_equal(uniform.state_weights(ev), np.ones_like(weight))
    np.testing.assert_allclose(visitation.update_direction(), visitation.gradient(), rtol=1e-15)
    np.testing.assert_allclose(uniform.gradient(), visitation.gradient(), rtol=1e-15)
    seen = weight > 1e-12
    np.testing.assert_allclose(uniform.update_direction()[seen], visitation.gradient()[seen] / weight[seen, None], rtol=1e-9)
    per_state = uniform.parameterization.gradient_factor(theta, ev.pi) * ev.advantage
    np.testing.assert_allclose(uniform.update_direction(), per_state, rtol=1e-15)
    live = ~visitation.mdp.terminal
    assert np.abs(per_state[live]).sum(axis=1).min() > 0


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gnpg_normalises_the_gradient_of_its_state_weighting(mdps: dict, env_id: str) -> None:
    visitation, uniform, theta = _weighted_agents(mdps[env_id], "gnpg")
    ev = visitation.evaluate()
    weight = ev.d / (1 - visitation.mdp.gamma)
    uniform_gradient = ev.pi * ev.advantage
    np.testing.assert_allclose(uniform.update_direction(), uniform_gradient / np.linalg.norm(uniform_gradient), rtol=1e-12)
    visitation_gradient = weight[:, None] * uniform_gradient
    np.testing.assert_allclose(
        visitation.update_direction(), visitation_gradient / np.linalg.norm(visitation_gradient), rtol=1e-12
    )
    for agent in (visitation, uniform):
        assert np.linalg.norm(agent.update_direction()) == pytest.approx(1.0)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_neurd_visitation_step_is_the_uniform_step_times_the_visitation(mdps: dict, env_id: str) -> None:
    visitation, uniform, theta = _weighted_agents(mdps[env_id], "neurd", beta=1.0)
    ev = visitation.evaluate()
    weight = ev.d / (1 - visitation.mdp.gamma)
    np.testing.assert_allclose(uniform.update_direction(), neurd_threshold(theta, ev.advantage, 1.0), rtol=1e-15)
    np.testing.assert_allclose(visitation.update_direction(), weight[:, None] * uniform.update_direction(), rtol=1e-12)


@pytest.mark.parametrize("policy", ["escort", "gnpg"])
def test_uniform_weighting_does_not_depend_on_the_start_distribution(mdps: dict, policy: str) -> None:
    runs = [
        ExactPG(mdps["FourRooms-v0"], policy=policy, rho=rho, state_weighting="uniform").learn(20)
        for rho in ("env", "uniform")
    ]
    np.testing.assert_allclose(runs[0].theta, runs[1].theta, rtol=1e-10, atol=1e-13)
    assert not np.allclose(runs[0].history["value"], runs[1].history["value"])
    visitation = [ExactPG(mdps["FourRooms-v0"], policy=policy, rho=rho).learn(20) for rho in ("env", "uniform")]
    assert not np.allclose(visitation[0].theta, visitation[1].theta)


@pytest.mark.parametrize("policy", ["softmax", "escort", "neurd", "gnpg"])
def test_bandit_weightings_are_the_same_algorithm(mdps: dict, policy: str) -> None:
    visitation, uniform, _ = _weighted_agents(mdps["Bandit-v0"], policy)
    s0 = visitation.start_state
    assert visitation.evaluate().d[s0] / (1 - visitation.mdp.gamma) == pytest.approx(1.0, rel=1e-15)
    visitation.learn(50)
    uniform.learn(50)
    np.testing.assert_allclose(visitation.theta, uniform.theta, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(visitation.history["value"], uniform.history["value"], rtol=1e-12)


def test_best_value_avoiding_keeps_out_of_traps_and_avoided_states() -> None:
    # states: 0 start, 1 fork, 2 trap (every action enters 3), 3 goal A (avoided), 4 goal B; 2 actions
    P, R = np.zeros((5, 2, 5)), np.zeros((5, 2))
    P[0, 0, 3], R[0, 0], P[0, 1, 1] = 1.0, 1.0, 1.0
    P[1, 0, 4], R[1, 0], P[1, 1, 2] = 1.0, 0.5, 1.0
    P[2, :, 3], R[2, :] = 1.0, 2.0
    P[3, :, 3] = P[4, :, 4] = 1.0
    mdp = TabularMDP(P=P, R=R, terminal=[False, False, False, True, True], initial=[1.0, 0, 0, 0, 0], gamma=0.9)
    assert value_iteration(mdp)[0][0] == pytest.approx(0.9 * 0.9 * 2.0)
    avoid = np.array([False, False, False, True, False])
    np.testing.assert_array_equal(
        avoiding_actions(mdp, avoid), [[False, True], [True, False], [False, False], [False, False], [True, True]]
    )
    V, Q = best_value_avoiding(mdp, avoid)
    assert V[0] == pytest.approx(0.9 * 0.5) and V[1] == pytest.approx(0.5) and V[4] == 0.0
    assert V[2] == V[3] == -np.inf and Q[0, 0] == Q[1, 1] == -np.inf


def test_fourrooms_escape_threshold_lies_between_the_best_other_route_and_the_optimal_one(mdps: dict) -> None:
    mdp = mdps["FourRooms-v0"]
    threshold = load_hyperparams("exact", "FourRooms-v0", env_family("FourRooms-v0"))["escape_threshold"]
    agent = ExactPG(mdp, policy="softmax", escape_threshold=threshold)
    assert agent.escape == "value"
    s0, optimal = agent.start_state, np.eye(4)[agent.optimal_actions]
    end = mdp.terminal & (discounted_visitation(mdp, optimal) > 0)
    assert end.sum() == 1
    V_other, Q_other = best_value_avoiding(mdp, end)
    other = np.eye(4)[Q_other.argmax(axis=1)]
    assert policy_evaluation(mdp, other)[0][s0] == pytest.approx(V_other[s0], rel=1e-9)
    assert discounted_visitation(mdp, other)[end].sum() == 0.0
    no_subgoal_route = value_iteration(gym.make("FourRooms-v0", subgoals=[]).unwrapped.transition_model())[0][s0]
    fraction = V_other[s0] / agent.optimal_value
    assert no_subgoal_route < V_other[s0] and fraction < threshold < 1.0
    assert (threshold - fraction) / (1.0 - fraction) > 0.5
    for pi, escapes in ((other, False), (optimal, True)):
        near = ExactPG(mdp, policy="softmax", escape_threshold=threshold)
        near.theta = np.log(0.999 * pi + 0.00025)
        near.learn(1)
        assert (near.escape_time == 0) is escapes


def test_neurd_threshold_gates_by_sign() -> None:
    theta = np.array([[3.0, 3.0, -3.0, -3.0, 0.0, 0.0]])
    update = np.array([[1.0, -1.0, 1.0, -1.0, 1.0, -1.0]])
    np.testing.assert_array_equal(neurd_threshold(theta, update, beta=2.0), [[0.0, -1.0, 1.0, 0.0, 1.0, -1.0]])


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_normalised_escort_step_equals_unnormalised_step_scaled_by_norm_squared(mdps: dict, env_id: str) -> None:
    p, eta = 2.0, 0.3
    base = ExactPG(mdps[env_id], policy="escort", p=p, normalize=False, init="random", seed=10, learning_rate=eta)
    scales = np.random.default_rng(11).uniform(0.5, 3.0, size=(base.theta.shape[0], 1))
    theta = base.theta * scales
    norms_sq = ((np.abs(theta) ** p).sum(axis=1, keepdims=True)) ** (2 / p)
    expected = base.policy(theta + eta * norms_sq * base.gradient(theta))
    normalised = ExactPG(mdps[env_id], policy="escort", p=p, normalize=True, learning_rate=eta)
    normalised.theta = theta / norms_sq**0.5
    normalised.learn(1)
    np.testing.assert_allclose(normalised.policy(), expected, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose((np.abs(normalised.theta) ** p).sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_evaluation_agrees_with_tabular_solvers(mdps: dict, env_id: str) -> None:
    mdp = mdps[env_id]
    assert is_one_step(mdp) == (env_id == "Bandit-v0")
    agent = ExactPG(mdp, policy="softmax", init="random", seed=12)
    ev = agent.evaluate()
    V, Q = policy_evaluation(mdp, ev.pi)
    np.testing.assert_allclose(ev.V, V, atol=1e-12)
    np.testing.assert_allclose(ev.Q, Q, atol=1e-12)
    np.testing.assert_allclose(ev.d, discounted_visitation(mdp, ev.pi), atol=1e-12)
    assert ev.value == pytest.approx(float(mdp.initial @ V))


def _rollouts(env: gym.Env, pi: np.ndarray, gamma: float, n: int, seed: int, first_action: int | None = None) -> tuple:
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(pi, axis=1)
    returns, visits = np.empty(n), np.zeros((n, pi.shape[0]))
    horizon = math.ceil(math.log(1e-5) / math.log(gamma))
    for i in range(n):
        _, info = env.reset(seed=seed + i)
        state, discount, total = info["state"], 1.0, 0.0
        for t in range(horizon):
            visits[i, state] += (1 - gamma) * discount
            action = first_action if t == 0 and first_action is not None else int(np.searchsorted(cdf[state], rng.random()))
            _, reward, terminated, truncated, info = env.step(min(action, pi.shape[1] - 1))
            total += discount * float(reward)
            discount *= gamma
            state = info["state"]
            if terminated or truncated:
                break
        returns[i] = total
    return returns, visits


def _assert_within(estimates: np.ndarray, exact: float, slack: float = 2e-5) -> None:
    se = estimates.std(ddof=1) / math.sqrt(len(estimates))
    assert abs(estimates.mean() - exact) <= 4 * se + slack, (estimates.mean(), exact, se)


@pytest.mark.parametrize(
    ("env_id", "env_kwargs", "episodes"),
    [("Bandit-v0", {"noise": 0.5}, 400), ("FourRooms-v0", {"slip": 0.2, "max_episode_steps": 100_000}, 150)],
)
def test_policy_evaluation_matches_monte_carlo_rollouts(env_id: str, env_kwargs: dict, episodes: int) -> None:
    env = gym.make(env_id, **env_kwargs)
    agent = ExactPG(env, policy="softmax", init="uniform")
    greedy = np.eye(agent.mdp.n_actions)[agent.optimal_actions]
    pi = 0.7 * greedy + 0.3 / agent.mdp.n_actions
    ev = agent.evaluate(np.log(pi))
    gamma, s0 = agent.mdp.gamma, agent.start_state
    returns, visits = _rollouts(env, pi, gamma, 2 * episodes, seed=100)
    _assert_within(returns, ev.V[s0])
    for s in np.flatnonzero((ev.d > 0.01) & ~agent.mdp.terminal):
        _assert_within(visits[:, s], ev.d[s])
    for a in range(agent.mdp.n_actions):
        q_returns, _ = _rollouts(env, pi, gamma, episodes, seed=1000 * (a + 1), first_action=a)
        _assert_within(q_returns, ev.Q[s0, a])
    env.close()


def test_adversarial_init_is_the_same_policy_for_every_parameterization(mdps: dict) -> None:
    mdp = mdps["FourRooms-v0"]
    pi0 = 1e-3
    policies = [ExactPG(mdp, policy=name, pi0=pi0, **kwargs).policy() for name, kwargs in POLICIES]
    for pi in policies[1:]:
        np.testing.assert_allclose(pi, policies[0], rtol=1e-4, atol=1e-8)
    agent = ExactPG(mdp, policy="escort", pi0=pi0)
    live = ~mdp.terminal
    rows = np.flatnonzero(live)
    np.testing.assert_allclose(policies[0][rows, agent.optimal_actions[live]], pi0, rtol=1e-4)
    np.testing.assert_allclose(policies[0].sum(axis=1), 1.0)
    q_b = agent.optimal_Q[rows, agent.suboptimal_actions[live]]
    has_suboptimal = agent.optimal_Q[rows].min(axis=1) < agent.optimal_V[rows] - 1e-9
    assert has_suboptimal.mean() > 0.9
    assert np.all(q_b[has_suboptimal] < agent.optimal_V[rows][has_suboptimal] - 1e-9)
    ties = rows[~has_suboptimal]
    np.testing.assert_array_equal(agent.suboptimal_actions[ties], (agent.optimal_actions[ties] + 1) % 4)
    assert np.all(policies[0][rows, agent.suboptimal_actions[live]] > 1 - pi0 - 3 * pi0**2 - 1e-6)


def test_bandit_gravity_well_softmax_escapes_like_one_over_pi0_escort_much_faster(mdps: dict) -> None:
    mdp = mdps["Bandit-v0"]

    def escape(policy: str, pi0: float) -> int:
        agent = ExactPG(mdp, policy=policy, pi0=pi0, learning_rate=0.4)
        agent.learn(100_000, callback=lambda a: a.escape_time is None)
        assert agent.escape_time is not None
        history = agent.history
        assert agent.escape_time == int(np.argmax(history["pi_star"] >= 0.9))
        np.testing.assert_allclose(history["gap"], agent.optimal_value - history["value"])
        return agent.escape_time

    spg_2, spg_3 = escape("softmax", 1e-2), escape("softmax", 1e-3)
    epg_2, epg_3 = escape("escort", 1e-2), escape("escort", 1e-3)
    assert 5 <= spg_3 / spg_2 <= 20
    assert spg_2 >= 10 * epg_2
    assert epg_3 / epg_2 < 3


def test_learning_improves_value_and_is_deterministic(mdps: dict) -> None:
    mdp = mdps["FourRooms-v0"]
    kwargs = {"policy": "escort", "optimizer": "adam", "learning_rate": 0.05, "init": "random"}
    runs = [ExactPG(mdp, seed=s, **kwargs).learn(40) for s in (5, 5, 6)]
    np.testing.assert_array_equal(runs[0].theta, runs[1].theta)
    assert not np.array_equal(runs[0].theta, runs[2].theta)
    history = runs[0].history
    assert all(len(v) == 40 for v in history.values())
    assert history["value"][-1] > history["value"][0]
    runs[0].learn(10)
    assert len(runs[0].history["value"]) == 50 and runs[0].num_iterations == 50


def test_callback_stops_early_and_uniform_start_changes_the_objective(mdps: dict) -> None:
    agent = ExactPG(mdps["FourRooms-v0"], policy="softmax").learn(100, callback=lambda a: a.num_iterations < 7)
    assert agent.num_iterations == 7 and len(agent.history["value"]) == 7
    uniform = ExactPG(mdps["FourRooms-v0"], policy="softmax", rho="uniform")
    assert uniform.start_state == agent.start_state
    np.testing.assert_allclose(uniform.mdp.initial[~uniform.mdp.terminal], 1 / 412)
    assert uniform_start(mdps["Bandit-v0"]).initial[0] == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"policy": "sparsemax"},
        {"p": 0.0},
        {"p": float("nan")},
        {"optimizer": "rmsprop"},
        {"learning_rate": -1.0},
        {"init": "zeros"},
        {"pi0": 1.5},
        {"pi0": 0.0},
        {"pi0": 0.45},
        {"beta": 0.0},
        {"escape": "sometimes"},
        {"escape_threshold": 0.0},
        {"normalize": "yes"},
        {"rho": "start"},
        {"seed": 1.5},
    ],
)
def test_bad_arguments_raise_value_error(mdps: dict, kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ExactPG(mdps["Bandit-v0"], **kwargs)


def test_env_without_transition_model_and_bad_iterations_raise_value_error(mdps: dict) -> None:
    with pytest.raises(ValueError, match="CartPole-v1 has no transition_model"):
        ExactPG(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="n_iterations"):
        ExactPG(mdps["Bandit-v0"]).learn(-1)


def test_curve_indices_keep_ends_and_bound_the_rows() -> None:
    np.testing.assert_array_equal(curve_indices(5, 10), np.arange(5))
    keep = curve_indices(1_000_000, 2000)
    assert keep[0] == 0 and keep[-1] == 999_999 and len(keep) <= 2000
    assert np.all(np.diff(keep) > 0) and np.sum(keep < 100) >= 50


def test_train_runs_exact_and_stores_the_escape_time(tmp_path: Path) -> None:
    config = RunConfig(algo="exact", env="Bandit-v0", policy="escort", n_timesteps=300, log_folder=str(tmp_path), verbose=0)
    summary = run(config)
    run_dir = Path(summary["run_dir"])
    assert {"metrics.csv", "summary.json", "config.yml", "theta.npz"} <= {p.name for p in run_dir.iterdir()}
    direct = ExactPG(gym.make("Bandit-v0"), policy="escort", learning_rate=0.4, pi0=1e-2).learn(300)
    assert summary["escape_time"] == direct.escape_time is not None
    assert summary["final_value"] == pytest.approx(direct.objective())
    assert summary["fraction_of_optimal"] == pytest.approx(direct.objective() / 1.0)
    metrics = read_metrics(run_dir)
    assert ("escape_time" in {m for _, m, _ in metrics}) and len([r for r in metrics if r[1] == "gap"]) == 300
    np.testing.assert_allclose(np.load(run_dir / "theta.npz")["theta"], direct.theta)


def test_cli_takes_hyperparams_and_reports_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    common = ["--algo", "exact", "-f", str(tmp_path), "-n", "50", "--verbose", "0"]
    assert main([*common, "--policy", "neurd", "--env", "FourRooms-v0", "--hyperparams", "pi0=0.1", "beta=.inf"]) == 0
    assert main([*common, "--policy", "escort", "--env", "CartPole-v1"]) == 2
    assert "no transition_model" in capsys.readouterr().err
    assert main([*common, "--policy", "gnpg", "--env", "Bandit-v0", "--hyperparams", "momentum=0.9"]) == 2
    assert "exact does not take momentum" in capsys.readouterr().err
    assert main([*common, "--policy", "softmax", "--env", "Bandit-v0", "--hyperparams", "pi0=2"]) == 2
    assert "pi0" in capsys.readouterr().err


def test_cli_state_weighting_is_recorded_and_bad_values_and_eps_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    common = ["--algo", "exact", "-f", str(tmp_path), "-n", "20", "--verbose", "0", "--env", "FourRooms-v0"]
    assert main([*common, "--policy", "neurd", "--hyperparams", "state_weighting=uniform"]) == 0
    (config_file,) = tmp_path.glob("**/config.yml")
    assert load_yaml(config_file.read_text())["resolved_hyperparams"]["state_weighting"] == "uniform"
    capsys.readouterr()
    for bad, message in (("state_weighting=reach", "state_weighting must be one of visitation, uniform"), ("eps=1e-6", "eps")):
        assert main([*common, "--policy", "escort", "--hyperparams", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    with pytest.raises(UsageError, match=r"exact does not take eps \(eps: the exact escort"):
        build_agent(RunConfig(algo="exact", env="Bandit-v0", policy="escort"), {"eps": 1e-6})


def test_learning_rate_mapping_needs_the_policy() -> None:
    config = RunConfig(algo="exact", env="Bandit-v0", policy="gnpg")
    with pytest.raises(UsageError, match="no entry for policy gnpg"):
        build_agent(config, {"n_timesteps": 1, "learning_rate": {"softmax": 0.4}})
    assert build_agent(config, {"learning_rate": {"gnpg": 0.25}}).learning_rate == 0.25
