"""TabularPG: sampled gradients are unbiased for the exact ones, rollouts follow the env's dynamics, committal failure,
seeding, the runner and its usage errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the envs)
from agents import ExactPG, TabularPG
from agents.tabular_pg import advantage_estimate, learn_together, visits
from agents.tabular_rollout import GymVectorSampler, make_sampler
from experiments.cli import main
from experiments.results import read_metrics

#: A small FourRooms: gamma^H = 0.9^400 ~ 5e-19, so the time limit leaves the model's gradient unchanged.
SMALL_FOUR_ROOMS = {"gamma": 0.9, "slip": 0.1, "max_episode_steps": 400}
SETTINGS = {
    "Bandit-v0": ("Bandit-v0", {"noise": 0.5}, 200, 64),
    "FourRooms-v0": ("FourRooms-v0", SMALL_FOUR_ROOMS, 120, 64),
}
POLICIES = [("softmax", {}), ("escort", {"p": 2.0}), ("escort", {"p": 3.0, "normalize": False})]


def _pair(env_id: str, env_kwargs: dict, **kwargs: object) -> tuple[TabularPG, TabularPG]:
    """A sampled agent and its exact twin, both at a policy that mixes the optimal one with the uniform one."""
    env = gym.make(env_id, **env_kwargs)
    exact = TabularPG(env, gradient="exact", init="uniform", **kwargs)
    sampled = TabularPG(env, gradient="sampled", init="uniform", seed=7, **kwargs)
    greedy = np.eye(exact.mdp.n_actions)[exact.optimal_actions]
    theta = exact.parameterization.from_probs(0.6 * greedy + 0.4 / exact.mdp.n_actions)
    exact.theta = sampled.theta = theta
    return exact, sampled


def _assert_mean_matches(samples: np.ndarray, exact: np.ndarray, rel: float) -> None:
    """The mean of the samples points the exact way (cosine > 0.95), is within ``rel`` of it, and its projection on
    the exact direction is within 4 standard errors of ``||exact||``."""
    mean = samples.mean(axis=0)
    norm = np.linalg.norm(exact)
    assert np.sum(mean * exact) / (np.linalg.norm(mean) * norm) > 0.95
    assert np.linalg.norm(mean - exact) <= rel * norm
    projections = samples.reshape(len(samples), -1) @ (exact.ravel() / norm)
    assert abs(projections.mean() - norm) <= 4 * projections.std(ddof=1) / math.sqrt(len(samples))


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize(("policy", "kwargs"), POLICIES)
def test_mean_of_sampled_gradients_is_the_exact_gradient(setting: str, policy: str, kwargs: dict) -> None:
    env_id, env_kwargs, calls, n_episodes = SETTINGS[setting]
    exact, sampled = _pair(env_id, env_kwargs, policy=policy, n_episodes=n_episodes, **kwargs)
    samples = np.stack([sampled.gradient() for _ in range(calls)])
    assert not np.array_equal(samples[0], samples[1])  # fresh episodes at every call
    assert sampled.num_episodes == calls * n_episodes
    _assert_mean_matches(samples, exact.gradient(), rel=0.1 if env_id == "Bandit-v0" else 0.3)
    assert np.all(samples[:, exact.mdp.terminal] == 0.0)


def test_sampled_neurd_and_gnpg_follow_their_exact_directions() -> None:
    exact, sampled = _pair("FourRooms-v0", SMALL_FOUR_ROOMS, policy="neurd", n_episodes=64, neurd_clip=math.inf, beta=50.0)
    directions = np.stack([sampled.update_direction() for _ in range(120)])
    _assert_mean_matches(directions, exact.update_direction(), rel=0.3)
    clipped = TabularPG(gym.make("FourRooms-v0", **SMALL_FOUR_ROOMS), policy="neurd", gradient="sampled", neurd_clip=0.01)
    assert np.abs(clipped.update_direction()).max() <= 0.01 / (1 - 0.9) + 1e-12  # clip * sum_t gamma^t
    exact, sampled = _pair("Bandit-v0", {"noise": 0.5}, policy="gnpg", n_episodes=64)
    direction = sampled.update_direction()
    assert np.linalg.norm(direction) == pytest.approx(1.0)
    _assert_mean_matches(np.stack([sampled.gradient() for _ in range(200)]), exact.gradient(), rel=0.1)


@pytest.mark.parametrize("policy", ["softmax", "escort"])
def test_uniform_weighting_is_unbiased_where_every_episode_visits(policy: str) -> None:
    exact, sampled = _pair("Bandit-v0", {"noise": 0.5}, policy=policy, n_episodes=32, state_weighting="uniform")
    _assert_mean_matches(np.stack([sampled.update_direction() for _ in range(200)]), exact.update_direction(), rel=0.1)
    exact, sampled = _pair("FourRooms-v0", SMALL_FOUR_ROOMS, policy=policy, n_episodes=64, state_weighting="uniform")
    s0 = exact.start_state
    directions = np.stack([sampled.update_direction() for _ in range(120)])
    _assert_mean_matches(directions[:, s0], exact.update_direction()[s0], rel=0.3)
    episodes = sampled.sample_episodes()
    advantage = advantage_estimate(visits(episodes, sampled.policy(), 0.9), (416, 4), 0.9, "uniform", math.inf)
    visited = np.zeros(exact.mdp.n_states, dtype=bool)
    visited[episodes.states[:-1][episodes.alive]] = True
    assert np.all(advantage[~visited] == 0.0) and not visited.all() and np.abs(advantage[visited]).max() > 0


@pytest.mark.parametrize(("rho", "start_distribution"), [("env", "cell"), ("uniform", "cell"), ("env", "uniform")])
def test_rollouts_follow_the_env_dynamics(rho: str, start_distribution: str) -> None:
    env = gym.make("FourRooms-v0", slip=0.2, gamma=0.9, max_episode_steps=300, start_distribution=start_distribution)
    agent = TabularPG(env, policy="softmax", gradient="sampled", init="random", seed=3, rho=rho)
    mdp = agent.mdp
    episodes = agent.sample_episodes(4000)
    returns = episodes.returns_to_go(mdp.gamma)[0]
    assert abs(returns.mean() - agent.objective()) <= 4 * returns.std(ddof=1) / math.sqrt(len(returns))
    t, i = np.nonzero(episodes.alive)
    assert np.all(mdp.P[episodes.states[t, i], episodes.actions[t, i], episodes.states[t + 1, i]] > 0)
    assert not mdp.terminal[episodes.states[t, i]].any()
    ended = episodes.lengths < 300
    assert np.all(mdp.terminal[episodes.states[episodes.lengths[ended], np.flatnonzero(ended)]])
    starts = np.bincount(episodes.states[0], minlength=mdp.n_states) / 4000
    assert np.abs(starts - mdp.initial).max() < 0.01


def test_generic_vector_sampler_follows_the_env_dynamics() -> None:
    exact, _ = _pair("FourRooms-v0", {"slip": 0.2, "gamma": 0.9, "max_episode_steps": 300}, policy="softmax")
    env = gym.make("FourRooms-v0", slip=0.2, gamma=0.9, max_episode_steps=300)
    episodes = GymVectorSampler(env, exact.mdp, None, np.random.default_rng(0)).sample(exact.policy(), 200)
    returns = episodes.returns_to_go(0.9)[0]
    assert abs(returns.mean() - exact.objective()) <= 4 * returns.std(ddof=1) / math.sqrt(200)
    t, i = np.nonzero(episodes.alive)
    assert np.all(exact.mdp.P[episodes.states[t, i], episodes.actions[t, i], episodes.states[t + 1, i]] > 0)


def test_bandit_rollouts_have_the_env_reward_law() -> None:
    env = gym.make("Bandit-v0", noise=0.5)
    agent = TabularPG(env, policy="escort", gradient="sampled", init="random", seed=1)
    episodes = agent.sample_episodes(20_000)
    pi = agent.policy()[0]
    np.testing.assert_allclose(np.bincount(episodes.actions[0], minlength=3) / 20_000, pi, atol=0.015)
    for arm, mean in enumerate(env.unwrapped.rewards):
        rewards = episodes.rewards[0, episodes.actions[0] == arm]
        assert abs(rewards.mean() - mean) < 4 * 0.5 / math.sqrt(len(rewards)) and rewards.std() == pytest.approx(0.5, rel=0.1)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(gym.make("Bandit-v0").unwrapped.sample_rewards(np.array([[0, 2]]), rng), [[1.0, 0.1]])


def test_same_seed_same_numbers_and_sampled_learning_improves() -> None:
    env = gym.make("FourRooms-v0")
    kwargs = {"policy": "escort", "gradient": "sampled", "n_episodes": 8, "init": "uniform", "rho": "uniform"}
    runs = [TabularPG(env, seed=s, **kwargs).learn(15) for s in (4, 4, 5)]
    np.testing.assert_array_equal(runs[0].theta, runs[1].theta)
    np.testing.assert_array_equal(runs[0].history["grad_norm"], runs[1].history["grad_norm"])
    assert not np.array_equal(runs[0].theta, runs[2].theta)
    bandit = TabularPG(gym.make("Bandit-v0"), policy="softmax", gradient="sampled", init="uniform", learning_rate=0.4)
    bandit.learn(300)
    history = bandit.history
    assert history["value"][-20:].mean() > history["value"][0] + 0.1 and bandit.num_episodes == 300 * 16


def _fourrooms_agent(policy: str, seed: int, **kwargs: object) -> TabularPG:
    env = gym.make("FourRooms-v0", **kwargs.pop("env_kwargs", {}))  # type: ignore[arg-type]
    options: dict = {"init": "adversarial", "pi0": 0.1, **kwargs}
    return TabularPG(env, policy=policy, gradient="sampled", n_episodes=8, seed=seed, **options)


def test_learning_together_gives_the_numbers_of_learning_alone() -> None:
    specs = [
        ("softmax", 0, {}),
        ("escort", 1, {"p": 4.0}),
        ("neurd", 2, {}),
        ("escort", 3, {"rho": "uniform", "init": "uniform"}),
        ("gnpg", 4, {"env_kwargs": {"start_distribution": "uniform"}}),
    ]
    stop_at = {2: 7}  # one agent stops early through its callback; the others must not wait for it

    def callbacks() -> list:
        return [(lambda a, k=k: a.num_iterations < stop_at[k]) if k in stop_at else None for k in range(len(specs))]

    alone = [_fourrooms_agent(policy, seed, **dict(kw)) for policy, seed, kw in specs]
    for agent, callback in zip(alone, callbacks(), strict=True):
        agent.learn(20, callback)
    together = [_fourrooms_agent(policy, seed, **dict(kw)) for policy, seed, kw in specs]
    learn_together(together, 20, callbacks())
    for a, b in zip(alone, together, strict=True):
        assert a.num_iterations == b.num_iterations and a.num_episodes == b.num_episodes
        np.testing.assert_array_equal(a.theta, b.theta)
        for key, values in a.history.items():
            np.testing.assert_array_equal(values, b.history[key])
        np.testing.assert_array_equal(a.sample_episodes().actions, b.sample_episodes().actions)  # generators in step too
    assert together[2].num_iterations == 7 and together[0].num_iterations == 20


def test_learning_together_refuses_what_it_cannot_pool_and_passes_errors_on() -> None:
    with pytest.raises(ValueError, match="slip"):
        learn_together([_fourrooms_agent("softmax", 0, env_kwargs={"slip": 0.1})], 2)
    mixed = [_fourrooms_agent("softmax", 0), _fourrooms_agent("softmax", 1, env_kwargs={"subgoals": []})]
    with pytest.raises(ValueError, match="at most in their start"):
        learn_together(mixed, 2)
    assert mixed[0].sampler.pool is None  # type: ignore[union-attr]  (the refused pool leaves no agent joined)
    bandit = TabularPG(gym.make("Bandit-v0"), policy="softmax", gradient="sampled", seed=0)
    with pytest.raises(ValueError, match="FourRooms-v0 only"):
        learn_together([bandit], 2)

    def fail(agent: TabularPG) -> bool:
        if agent.num_iterations == 3:
            raise RuntimeError("callback failed")
        return True

    agents = [_fourrooms_agent("softmax", 0), _fourrooms_agent("escort", 1)]
    with pytest.raises(RuntimeError, match="callback failed"):
        learn_together(agents, 10, [fail, None])
    assert agents[1].num_iterations == 10  # the other agent was not left waiting
    assert agents[0].sampler.pool is None  # type: ignore[union-attr]


def test_exact_gradient_is_exact_pg_number_for_number() -> None:
    env = gym.make("FourRooms-v0")
    kwargs = {"policy": "neurd", "optimizer": "adam", "learning_rate": 0.05, "init": "random", "seed": 2}
    tabular, exact = TabularPG(env, gradient="exact", **kwargs).learn(20), ExactPG(env, **kwargs).learn(20)
    np.testing.assert_array_equal(tabular.theta, exact.theta)
    for key, values in exact.history.items():
        np.testing.assert_array_equal(tabular.history[key], values)
    assert tabular.num_episodes == 0


def test_committal_failure_means_committed_to_a_suboptimal_deterministic_policy() -> None:
    env = gym.make("FourRooms-v0")
    assert TabularPG(env, policy="softmax", init="adversarial", pi0=1e-3).committal_failure()
    assert not TabularPG(env, policy="softmax", init="adversarial", pi0=0.1).committal_failure()
    assert not TabularPG(env, policy="softmax", init="uniform").committal_failure()
    bandit = TabularPG(gym.make("Bandit-v0"), policy="softmax", init="uniform")
    for arm, probability, committed in ((1, 0.995, True), (1, 0.98, False), (0, 0.999, False)):
        pi = np.full((2, 3), (1 - probability) / 2)
        pi[:, arm] = probability
        assert bandit.committal_failure(np.log(pi)) is committed


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gradient": "foo"}, "gradient must be one of exact, sampled"),
        ({"gradient": "sampled", "n_episodes": 0}, "n_episodes must be an integer >= 1"),
        ({"n_episodes": 1.5}, "n_episodes"),
        ({"n_episodes": True}, "n_episodes"),
        ({"neurd_clip": 0.0}, "neurd_clip"),
        ({"committal_threshold": 0.0}, "committal_threshold"),
        ({"gradient": "sampled", "seed": -1}, "seed must be >= 0"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TabularPG(gym.make("Bandit-v0"), **kwargs)


def test_sampling_needs_an_env_and_the_generic_sampler_its_start() -> None:
    env = gym.make("FourRooms-v0")
    model = env.unwrapped.transition_model()
    with pytest.raises(ValueError, match="need an env"):
        TabularPG(model, gradient="sampled")
    TabularPG(model, gradient="exact").gradient()
    uniform = ~model.terminal / (~model.terminal).sum()
    with pytest.raises(ValueError, match="rho='env'"):
        GymVectorSampler(env, model, uniform, np.random.default_rng(0))
    with pytest.raises(ValueError, match="gradient='sampled'"):
        TabularPG(env).sample_episodes()
    assert type(make_sampler(env, model, None, np.random.default_rng(0))).__name__ == "FourRoomsSampler"


def test_train_runs_tabular_sampled_and_writes_summary_and_metrics(tmp_path: Path) -> None:
    common = ["--algo", "tabular", "-f", str(tmp_path), "--verbose", "0", "--seed", "3"]
    sampled = ["--hyperparams", "gradient=sampled", "n_episodes=16"]
    assert main([*common, "--env", "Bandit-v0", "--policy", "escort", "-n", "50", *sampled]) == 0
    (run_dir,) = (tmp_path / "tabular").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["gradient"] == "sampled" and summary["n_episodes"] == 16 and summary["episodes"] == 50 * 16
    assert isinstance(summary["committal_failure"], bool) and summary["escaped"] == (summary["escape_time"] is not None)
    assert 0 < summary["final_value"] <= summary["optimal_value"]
    metrics = read_metrics(run_dir)
    assert len([r for r in metrics if r[1] == "value"]) == 50
    assert {"committal_failure", "escaped", "episodes"} <= {m for _, m, _ in metrics}
    assert main([*common, "--env", "FourRooms-v0", "--policy", "neurd", "-n", "5", "--hyperparams", "gradient=sampled"]) == 0


def test_tabular_exact_is_exact_and_bad_values_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for algo in ("tabular", "exact"):
        assert main(["--algo", algo, "--env", "Bandit-v0", "--policy", "gnpg", "-n", "30", "-f", str(tmp_path / algo)]) == 0
    runs = [next((tmp_path / algo / algo).iterdir()) for algo in ("tabular", "exact")]
    summaries = [json.loads((run / "summary.json").read_text()) for run in runs]
    assert summaries[0]["final_value"] == summaries[1]["final_value"] and summaries[0]["episodes"] == 0
    np.testing.assert_array_equal(*(np.load(run / "theta.npz")["theta"] for run in runs))
    capsys.readouterr()
    common = ["--env", "Bandit-v0", "--policy", "softmax", "-n", "5", "-f", str(tmp_path / "bad"), "--hyperparams"]
    for algo, bad, message in (
        ("tabular", "gradient=foo", "gradient must be one of exact, sampled"),
        ("tabular", "n_episodes=0", "n_episodes must be an integer >= 1"),
        ("exact", "gradient=sampled", "exact does not take gradient"),
    ):
        assert main(["--algo", algo, *common, bad]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "bad").exists()
