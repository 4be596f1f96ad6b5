"""FourRoomsEnv: the env follows its transition model, the documented layout values hold, inputs are checked."""

import subprocess
import sys
from collections import Counter
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs  # noqa: F401  (registers the ids)
from envs.four_rooms import DOWN, LEFT, RIGHT, UP, FourRoomsEnv
from envs.tabular import TabularMDP, discounted_visitation, policy_evaluation, value_iteration

GAMMA = 0.99
REPO = Path(__file__).resolve().parents[1]


def greedy(Q: np.ndarray) -> np.ndarray:
    return np.eye(Q.shape[1])[Q.argmax(axis=1)]


def follow(env: gym.Env, policy: np.ndarray, seed: int, max_steps: int = 10_000) -> list[tuple[int, int, float, int, bool]]:
    """Roll a tabular policy out through the env: (state, action, reward, next state, terminated) per step."""
    rng = np.random.default_rng([1, seed])
    _, info = env.reset(seed=seed)
    state, steps = info["state"], []
    for _ in range(max_steps):
        action = int(rng.choice(policy.shape[1], p=policy[state]))
        _, reward, terminated, truncated, info = env.step(action)
        steps.append((state, action, float(reward), info["state"], terminated))
        state = info["state"]
        if terminated or truncated:
            break
    return steps


def route(env: FourRoomsEnv) -> list[tuple[int, int]]:
    """Cells of the deterministic optimal route from the start."""
    V, Q = value_iteration(env.transition_model())
    return [tuple(env.cells[s % env.n_cells]) for _, _, _, s, _ in follow(env, greedy(Q), seed=0)]


def walk(env: gym.Env, actions: list[int]) -> list[tuple[np.ndarray, float, bool, dict]]:
    return [(obs, float(reward), terminated, info) for obs, reward, terminated, _, info in map(env.step, actions)]


# -- the model -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("slip", [0.0, 0.3])
def test_model_is_a_valid_mdp_over_augmented_states(slip: float) -> None:
    env = FourRoomsEnv(slip=slip)
    mdp = env.transition_model()
    assert env.n_cells == 104 and (~env.walls).sum() == 104
    assert mdp.n_states == 104 * 4 and mdp.n_actions == 4
    np.testing.assert_allclose(mdp.P.sum(axis=2), 1.0, atol=1e-12)
    assert np.flatnonzero(mdp.terminal).tolist() == [m * 104 + env.cell_index[(8, 11)] for m in range(4)]
    assert np.flatnonzero(mdp.initial).tolist() == [env.cell_index[(1, 1)]]
    assert mdp.gamma == GAMMA
    successors = (mdp.P > 0).sum(axis=2)[~mdp.terminal]
    assert successors.max() == (1 if slip == 0 else 4)


def test_observations_table_encodes_cell_and_flags() -> None:
    env = FourRoomsEnv()
    obs = env.observations()
    assert obs.shape == (416, 106) and obs.dtype == np.float32
    states = np.arange(416)
    np.testing.assert_array_equal(obs[:, :104].argmax(axis=1), states % 104)
    np.testing.assert_array_equal(obs[:, :104].sum(axis=1), 1.0)
    np.testing.assert_array_equal(obs[:, 104], (states // 104) & 1)
    np.testing.assert_array_equal(obs[:, 105], (states // 104) >> 1 & 1)
    assert np.all([env.observation_space.contains(o) for o in obs[::37]])


@pytest.mark.parametrize("seed", [0, 1])
def test_deterministic_rollouts_follow_the_model_exactly(seed: int) -> None:
    env = gym.make("FourRooms-v0")
    mdp, table = env.unwrapped.transition_model(), env.unwrapped.observations()
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    np.testing.assert_array_equal(obs, table[info["state"]])
    visited = set()
    for _ in range(10_000):
        state, action = info["state"], int(rng.integers(4))
        obs, reward, terminated, truncated, info = env.step(action)
        assert mdp.P[state, action, info["state"]] == 1.0
        assert reward == mdp.R[state, action]
        assert terminated == mdp.terminal[info["state"]]
        np.testing.assert_array_equal(obs, table[info["state"]])
        visited.add(info["state"])
        if terminated or truncated:
            obs, info = env.reset()
    assert len(visited) > 150


def test_slippery_transitions_match_the_model_statistically() -> None:
    slip = 0.4
    env = gym.make("FourRooms-v0", slip=slip, max_episode_steps=500)
    mdp = env.unwrapped.transition_model()
    exact = FourRoomsEnv(slip=0.0).transition_model()
    rng = np.random.default_rng(0)
    counts: Counter = Counter()
    _, info = env.reset(seed=0)
    for _ in range(40_000):
        state, action = info["state"], int(rng.integers(4))
        _, reward, terminated, truncated, info = env.step(action)
        counts[state, action, info["state"]] += 1
        moves = np.flatnonzero(exact.P[state, :, info["state"]] == 1.0)
        assert len(moves) > 0 and reward in exact.R[state, moves]
        if terminated or truncated:
            _, info = env.reset()
    pairs = Counter()
    for (s, a, _), n in counts.items():
        pairs[s, a] += n
    checked = 0
    for (s, a), n in pairs.items():
        if n < 100:
            continue
        empirical = np.zeros(mdp.n_states)
        for s_next in np.flatnonzero(mdp.P[s, a]):
            empirical[s_next] = counts[s, a, s_next] / n
        p = mdp.P[s, a]
        assert np.all(np.abs(empirical - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12)
        assert empirical[p == 0].sum() == 0
        checked += 1
    assert checked > 50


def test_policy_evaluation_matches_monte_carlo_returns() -> None:
    """A stochastic policy in a slippery env, discounted returns of long episodes vs V^pi(start)."""
    gamma = 0.95
    env = gym.make("FourRooms-v0", slip=0.1, gamma=gamma, max_episode_steps=500)
    mdp = env.unwrapped.transition_model()
    _, Q = value_iteration(mdp)
    pi = 0.6 * greedy(Q) + 0.4 * np.random.default_rng(0).dirichlet(np.ones(4), size=mdp.n_states)
    V, _ = policy_evaluation(mdp, pi)
    returns = []
    for episode in range(400):
        steps = follow(env, pi, seed=episode)
        returns.append(sum(gamma**t * reward for t, (_, _, reward, _, _) in enumerate(steps)))
    stderr = np.std(returns) / np.sqrt(len(returns))
    assert abs(np.mean(returns) - V[np.argmax(mdp.initial)]) < 4 * stderr
    assert 0.05 < V[np.argmax(mdp.initial)] < 1.0


def test_value_iteration_on_the_env_satisfies_bellman_optimality() -> None:
    mdp = FourRoomsEnv(slip=0.2).transition_model()
    V, Q = value_iteration(mdp)
    live = ~mdp.terminal
    np.testing.assert_allclose(V[live], (mdp.R + GAMMA * mdp.P @ V).max(axis=1)[live], atol=1e-8)
    d = discounted_visitation(mdp, greedy(Q))
    assert d.sum() == pytest.approx(1.0)


# -- the documented layout -------------------------------------------------------------------------------------------


def start_value(env: FourRoomsEnv, pi: np.ndarray | None = None) -> float:
    mdp = env.transition_model()
    V = value_iteration(mdp)[0] if pi is None else policy_evaluation(mdp, pi)[0]
    return float(V[np.argmax(mdp.initial)])


def test_documented_optimal_values() -> None:
    assert start_value(FourRoomsEnv()) == pytest.approx(0.2 * GAMMA**9 + 0.3 * GAMMA**17 + GAMMA**30, abs=1e-9)
    assert start_value(FourRoomsEnv()) == pytest.approx(1.1753, abs=1e-4)
    assert start_value(FourRoomsEnv(subgoals=[])) == pytest.approx(GAMMA**16, abs=1e-9)
    assert start_value(FourRoomsEnv(subgoals=[[7, 5, 0.2]])) == pytest.approx(1.0006, abs=1e-4)
    assert start_value(FourRoomsEnv(subgoals=[[11, 1, 0.3]])) == pytest.approx(1.0543, abs=1e-4)


def test_optimal_policy_collects_both_subgoals_and_the_shortest_route_none() -> None:
    optimal = route(FourRoomsEnv())
    assert len(optimal) == 31 and optimal[-1] == (8, 11)
    assert optimal.index((7, 5)) + 1 == 10 and optimal.index((11, 1)) + 1 == 18
    shortest = route(FourRoomsEnv(subgoals=[]))
    assert len(shortest) == 17 and (7, 5) not in shortest and (11, 1) not in shortest
    assert (3, 6) in shortest and (6, 2) not in shortest


def route_policy(avoid: list[int]) -> np.ndarray:
    """Optimal policy of the default layout, except that the sub-goals in ``avoid`` are to be avoided."""
    env = FourRoomsEnv()
    subgoals = [[row, col, -5.0 if i in avoid else reward] for i, (row, col, reward) in enumerate(env.subgoals)]
    return greedy(value_iteration(FourRoomsEnv(subgoals=subgoals).transition_model())[1])


@pytest.mark.parametrize("avoid, value", [([0, 1], GAMMA**16), ([1], 1.0006), ([0], 1.0543)])
def test_routes_that_skip_subgoals_are_local_optima(avoid: list[int], value: float) -> None:
    env = FourRoomsEnv()
    mdp, pi = env.transition_model(), route_policy(avoid)
    V, Q = policy_evaluation(mdp, pi)
    start = np.argmax(mdp.initial)
    assert V[start] == pytest.approx(value, abs=1e-4)
    assert V[start] < value_iteration(mdp)[0][start] - 0.1
    visited = discounted_visitation(mdp, pi) > 0
    assert np.all(Q[visited] <= V[visited, None] + 1e-12)


def test_uniform_exploration_finds_subgoals_more_often_than_the_goal() -> None:
    env = gym.make("FourRooms-v0")
    goal, flags = 0, np.zeros(2)
    for episode in range(300):
        steps = follow(env, np.full((416, 4), 0.25), seed=episode)
        goal += steps[-1][4]
        flags += env.unwrapped.observations()[steps[-1][3], 104:]
    assert 0.02 < goal / 300 < 0.12
    assert np.all(flags > 1.5 * goal)


# -- behaviour of the env --------------------------------------------------------------------------------------------


def test_walls_block_and_hallways_connect() -> None:
    env = FourRoomsEnv()
    obs, info = env.reset(seed=0)
    for obs_next, reward, terminated, info_next in walk(env, [UP, LEFT]):
        assert info_next["state"] == info["state"] and reward == 0.0 and not terminated
        np.testing.assert_array_equal(obs_next, obs)
    walk(env, [DOWN, DOWN, RIGHT, RIGHT, RIGHT, RIGHT])
    assert tuple(env.cells[env.state % 104]) == (3, 5)
    walk(env, [RIGHT])
    assert tuple(env.cells[env.state % 104]) == (3, 6)
    walk(env, [UP, DOWN, DOWN])
    assert tuple(env.cells[env.state % 104]) == (3, 6)


def test_subgoal_pays_once_per_episode_and_sets_its_flag() -> None:
    env = FourRoomsEnv()
    env.reset(seed=0)
    to_subgoal = [DOWN] * 4 + [RIGHT] + [DOWN] * 2 + [RIGHT] * 3
    rewards = [reward for _, reward, _, _ in walk(env, to_subgoal)]
    assert rewards == [0.0] * 9 + [0.2]
    obs, _, _, info = walk(env, [LEFT])[0]
    assert obs[104] == 1.0 and obs[105] == 0.0 and info["state"] // 104 == 1
    assert env.collected_subgoals() == [0]
    obs, reward, _, info = walk(env, [RIGHT])[0]
    assert reward == 0.0 and obs[104] == 1.0
    obs, info = env.reset()
    assert obs[104] == 0.0 and info["state"] == env.cell_index[(1, 1)] and env.collected_subgoals() == []
    assert [reward for _, reward, _, _ in walk(env, to_subgoal)][-1] == 0.2


def test_reaching_the_goal_terminates_with_the_goal_reward() -> None:
    env = FourRoomsEnv(subgoals=[])
    env.reset(seed=0)
    results = walk(env, [DOWN] * 2 + [RIGHT] * 8 + [DOWN] * 5 + [RIGHT] * 2)
    assert [terminated for _, _, terminated, _ in results] == [False] * 16 + [True]
    assert sum(reward for _, reward, _, _ in results) == 1.0


def test_time_limit_truncates_after_200_steps() -> None:
    env = gym.make("FourRooms-v0")
    env.reset(seed=0)
    truncations = [env.step(UP)[3] for _ in range(200)]
    assert truncations == [False] * 199 + [True]
    assert env.spec.max_episode_steps == 200


def test_same_seed_same_trajectory() -> None:
    def trajectory(seed: int) -> list:
        env = gym.make("FourRooms-v0", slip=0.5)
        env.reset(seed=seed)
        return [(info["state"], reward) for _, reward, _, _, info in (env.step(a % 4) for a in range(150))]

    assert trajectory(3) == trajectory(3)
    assert trajectory(3) != trajectory(4)


def test_subgoals_off_gives_the_plain_four_rooms() -> None:
    env = gym.make("FourRooms-v0", subgoals=[])
    obs, info = env.reset(seed=0)
    assert obs.shape == (104,) and env.observation_space.shape == (104,)
    assert env.unwrapped.transition_model().n_states == 104
    assert env.unwrapped.observations().shape == (104, 104)


def test_subgoal_formats_are_equivalent() -> None:
    triples = FourRoomsEnv(subgoals=[[2, 8, 0.5], (9, 3, 0.25)])
    mappings = FourRoomsEnv(subgoals=[{"position": [2, 8], "reward": 0.5}, {"position": (9, 3), "reward": 0.25}])
    assert triples.subgoals == mappings.subgoals == ((2, 8, 0.5), (9, 3, 0.25))
    np.testing.assert_array_equal(triples.transition_model().R, mappings.transition_model().R)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"start": (0, 0)}, "start .* not a free cell"),
        ({"start": (6, 3)}, "start .* not a free cell"),
        ({"goal": (13, 1)}, "goal .* not a free cell"),
        ({"goal": (1.0, 2)}, "goal must be a .row, col. pair of integers"),
        ({"start": "11"}, "start must be a .row, col. pair"),
        ({"goal": (1, 1)}, "start and goal must differ"),
        ({"subgoals": [[7, 5]]}, r"subgoal 0 must be a \[row, col, reward\] triple"),
        ({"subgoals": [[7, 6, 0.2]]}, "subgoal 0 position .* not a free cell"),
        ({"subgoals": [[7, 5, "a lot"]]}, "subgoal 0 reward must be a finite number"),
        ({"subgoals": [[7, 5, 0.1], [7, 5, 0.2]]}, "distinct"),
        ({"subgoals": [[8, 11, 0.1]]}, "goal .* must not be a subgoal"),
        ({"subgoals": [{"pos": [7, 5], "reward": 1}]}, "keys 'position' and 'reward'"),
        ({"subgoals": "[]"}, "subgoals must be a list"),
        ({"slip": 1.5}, "slip"),
        ({"gamma": 1.0}, "gamma"),
        ({"goal_reward": float("nan")}, "goal_reward must be a finite number"),
        ({"render_mode": "human"}, "render_mode"),
        ({"start_distribution": "corner"}, "start_distribution must be one of cell, uniform"),
    ],
)
def test_invalid_kwargs_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FourRoomsEnv(**kwargs)


def test_invalid_action_is_rejected() -> None:
    env = FourRoomsEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(4)


def test_ansi_rendering() -> None:
    env = FourRoomsEnv(render_mode="ansi")
    env.reset(seed=0)
    lines = env.render().splitlines()
    assert len(lines) == 13 and all(len(line) == 13 for line in lines)
    assert lines[1][1] == "A" and lines[8][11] == "G" and lines[7][5] == "s" and lines[11][1] == "s"
    assert sum(line.count("#") for line in lines) == 169 - 104
    walk(env, [DOWN] * 4 + [RIGHT] + [DOWN] * 2 + [RIGHT] * 3 + [LEFT])
    lines = env.render().splitlines()
    assert lines[7][5] == " " and lines[7][4] == "A" and lines[11][1] == "s"


def test_rgb_rendering() -> None:
    env = gym.make("FourRooms-v0", render_mode="rgb_array")
    env.reset(seed=0)
    image = env.render()
    assert image.shape == (104, 104, 3) and image.dtype == np.uint8
    agent, wall, goal = image[1 * 8 + 4, 1 * 8 + 4], image[4, 4], image[8 * 8 + 4, 11 * 8 + 4]
    assert len({tuple(agent), tuple(wall), tuple(goal)}) == 3
    env.step(RIGHT)
    assert not np.array_equal(env.render(), image)
    assert FourRoomsEnv().render() is None


def test_gymnasium_and_sb3_env_checkers_pass() -> None:
    for kwargs in ({}, {"slip": 0.2}, {"subgoals": []}):
        env = gym.make("FourRooms-v0", **kwargs)
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=True)
    gym_check_env(FourRoomsEnv(render_mode="rgb_array"))


def test_make_works_in_a_fresh_interpreter() -> None:
    code = "import gymnasium as gym; env = gym.make('envs:FourRooms-v0'); print(env.spec.max_episode_steps, env.reset()[1])"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["200", "{'state':", "0}"]


free_cells = st.sampled_from([tuple(int(v) for v in cell) for cell in FourRoomsEnv().cells])


@settings(max_examples=20, deadline=None)
@given(
    positions=st.lists(free_cells, min_size=2, max_size=4, unique=True),
    rewards=st.lists(st.floats(-1, 1), min_size=2, max_size=2),
    slip=st.sampled_from([0.0, 0.25]),
    seed=st.integers(0, 1000),
)
def test_random_layouts_follow_their_model(positions: list, rewards: list, slip: float, seed: int) -> None:
    start, goal, *rest = positions
    env = FourRoomsEnv(start=start, goal=goal, subgoals=[[*cell, r] for cell, r in zip(rest, rewards)], slip=slip)
    mdp: TabularMDP = env.transition_model()
    assert mdp.n_states == 104 * 2 ** len(rest)
    for s, a, reward, s_next, terminated in follow(env, np.full((mdp.n_states, 4), 0.25), seed=seed, max_steps=300):
        assert mdp.P[s, a, s_next] > 0 and terminated == mdp.terminal[s_next]
        if slip == 0:
            assert reward == mdp.R[s, a]


def test_uniform_start_draws_every_non_terminal_state_alike_and_the_model_says_so() -> None:
    env = gym.make("FourRooms-v0", start_distribution="uniform")
    base: FourRoomsEnv = env.unwrapped
    model = base.transition_model()
    non_terminal = np.flatnonzero(~model.terminal)
    np.testing.assert_allclose(model.initial[non_terminal], 1.0 / len(non_terminal))
    assert model.initial[model.terminal].sum() == 0.0 and len(non_terminal) == base.n_states - 4
    n = 20_000
    counts = Counter()
    env.reset(seed=0)
    for _ in range(n):
        obs, info = env.reset()
        np.testing.assert_array_equal(obs, base.observations()[info["state"]])
        counts[info["state"]] += 1
    assert set(counts) == set(non_terminal.tolist())
    expected = n / len(non_terminal)
    chi2 = sum((counts[s] - expected) ** 2 / expected for s in non_terminal)
    assert chi2 < len(non_terminal) + 5 * np.sqrt(2 * len(non_terminal))  # 5 standard deviations of a chi-square
    assert [env.reset(seed=7)[1]["state"] for _ in range(2)] == [env.reset(seed=7)[1]["state"]] * 2


def test_uniform_start_leaves_the_dynamics_and_the_cell_start_unchanged() -> None:
    uniform, cell = FourRoomsEnv(start_distribution="uniform").transition_model(), FourRoomsEnv().transition_model()
    np.testing.assert_array_equal(uniform.P, cell.P)
    np.testing.assert_array_equal(uniform.R, cell.R)
    assert cell.initial[FourRoomsEnv().reset()[1]["state"]] == 1.0
