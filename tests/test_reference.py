"""Reference scores: the YAML's entries, Atari lookups, references computed from transition models, the greedy/stochastic
label of every score, and the measurement of the uniform-random policy's returns."""

import importlib.util
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

import envs
from experiments.reference import (
    GREEDY,
    REFERENCE_FILE,
    STOCHASTIC,
    atari_game,
    load_reference_scores,
    model_reference,
    no_reference_reason,
    reference_metrics,
    run_score,
    score_policy,
    table_reference,
    write_reference_scores,
)

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = (
    "CartPole-v1", "Acrobot-v1", "MountainCar-v0", "MiniGrid-DoorKey-5x5-v0", "MiniGrid-DoorKey-8x8-v0",
    "MiniGrid-Empty-8x8-v0", "MiniGrid-Unlock-v0", "MiniGrid-KeyCorridorS3R1-v0", "MiniGrid-FourRooms-v0", "Digits-v0",
    "FourRooms-v0", "Bandit-v0",
)  # fmt: skip


def _benchmark():
    spec = importlib.util.spec_from_file_location("random_scores", ROOT / "benchmarks" / "random_scores.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def _model_values(env_id, **kwargs):
    mdp = gym.make(env_id, **kwargs).unwrapped.transition_model()
    uniform = np.full((mdp.n_states, mdp.n_actions), 1 / mdp.n_actions)
    return envs.policy_evaluation(mdp, uniform)[0] @ mdp.initial, envs.value_iteration(mdp)[0] @ mdp.initial


def test_every_entry_has_random_and_target_scores_with_sources():
    data = yaml.safe_load(REFERENCE_FILE.read_text())
    assert set(REQUIRED) <= set(data["envs"])
    entries = [*data["envs"].values(), *data["atari"].values()]
    for entry in entries:
        for side in ("random", "target"):
            assert isinstance(entry[side]["score"], float | int) and len(entry[side]["source"]) > 10
        assert entry["target"]["score"] > entry["random"]["score"]
    for env, entry in data["envs"].items():
        if "episodes" in entry["random"]:  # measured: the source names the command, the episodes and the standard error
            source = entry["random"]["source"]
            assert "benchmarks/random_scores.py" in source and f"{entry['random']['episodes']} episodes" in source
            assert "standard error" in source and entry["random"]["stderr"] >= 0, env
    assert data["envs"]["CartPole-v1"]["target"]["score"] == 500
    assert data["envs"]["Digits-v0"]["random"]["score"] == pytest.approx(0.1)
    assert load_reference_scores() == data


def test_atari_ids_of_every_style_find_dqn_zoos_game():
    pytest.importorskip("ale_py")
    data = load_reference_scores()
    assert len(data["atari"]) == 57
    assert {f"ALE/{game}-v5" for game in data["atari"]} <= set(gym.registry)
    assert atari_game("ale_py:ALE/SpaceInvaders-v5") == "SpaceInvaders" and atari_game("Pong-ramNoFrameskip-v4") == "Pong"
    pong = [table_reference(env, {}) for env in ("ALE/Pong-v5", "PongNoFrameskip-v4", "Pong-v4", "PongDeterministic-v4")]
    assert all(ref == pong[0] for ref in pong)
    random, human = data["atari"]["Pong"]["random"]["score"], data["atari"]["Pong"]["target"]["score"]
    assert (pong[0].random, pong[0].target) == (random, human)
    assert pong[0].normalize(random) == 0 and pong[0].normalize(human) == pytest.approx(1)
    assert table_reference("ALE/Adventure-v5", {}) is None  # not one of the 57 games


def test_cartpole_is_normalised_by_its_maximum_of_500_and_env_kwargs_have_no_reference():
    reference = table_reference("CartPole-v1", {})
    assert reference.target == 500 and 5 < reference.random < 50
    assert reference.normalize(500.0) == 1.0 and reference.normalize(reference.random) == 0.0
    assert reference.normalize(250.0) == pytest.approx((250 - reference.random) / (500 - reference.random))
    assert table_reference("CartPole-v1", {"sutton_barto_reward": True}) is None
    assert "env kwargs" in no_reference_reason("CartPole-v1", {"sutton_barto_reward": True})
    assert table_reference("Taxi-v3", {}) is None and "no entry" in no_reference_reason("Taxi-v3", {})
    assert table_reference("FourRooms-v0", {}) is None  # its entry is the model's: it never normalises returns


def test_tabular_references_are_computed_from_the_model_of_the_runs_env_kwargs():
    default, no_subgoals = model_reference("FourRooms-v0", {}), model_reference("FourRooms-v0", {"subgoals": []})
    assert (default.random, default.target) == pytest.approx(_model_values("FourRooms-v0"))
    assert (no_subgoals.random, no_subgoals.target) == pytest.approx(_model_values("FourRooms-v0", subgoals=[]))
    assert no_subgoals.target < default.target - 0.1  # the sub-goals' rewards raise V*
    uniform = model_reference("FourRooms-v0", {}, rho="uniform")
    assert uniform.target != pytest.approx(default.target)
    bandit = model_reference("Bandit-v0", {"rewards": [0.0, 0.3, 0.9]})
    assert (bandit.random, bandit.target) == pytest.approx((0.4, 0.9))
    assert model_reference("CartPole-v1", {}) is None
    data = load_reference_scores()
    for env in ("FourRooms-v0", "Bandit-v0"):  # the YAML's numbers of the model entries are the default kwargs' ones
        entry, computed = data["envs"][env], model_reference(env, {})
        assert entry["model"] and (entry["random"]["score"], entry["target"]["score"]) == pytest.approx(
            (computed.random, computed.target), abs=1e-6
        )


def test_run_score_picks_the_exact_value_where_there_is_a_model():
    ref = model_reference("FourRooms-v0", {})
    last = {"greedy_value": 0.5, "final_return": 0.9, "eval_return": 0.8, "fraction_of_optimal": 0.5 / ref.target}
    score = run_score("ppo", "FourRooms-v0", {}, {}, last)
    assert score.metric == "greedy_value" and score.policy == GREEDY
    assert score.normalized == pytest.approx((0.5 - ref.random) / (ref.target - ref.random))
    exact = run_score("exact", "FourRooms-v0", {}, {"rho": "uniform"}, {"final_value": 0.5, "value": 0.5})
    assert exact.metric == "final_value" and exact.policy == STOCHASTIC
    assert exact.reference == model_reference("FourRooms-v0", {}, rho="uniform")
    cart = run_score("ppo", "CartPole-v1", {}, {}, {"eval_return": 100.0})  # no final_return: the last evaluation
    assert cart.metric == "eval_return" and cart.normalized == pytest.approx(table_reference("CartPole-v1", {}).normalize(100))
    assert run_score("ppo", "CartPole-v1", {}, {}, {"fps": 3.0}) is None


def test_greedy_or_stochastic_follows_the_algorithm_and_the_evaluation_mode():
    from experiments.sb3_run import eval_deterministic

    assert score_policy("exact", "FourRooms-v0", {}, "final_value") == STOCHASTIC
    assert score_policy("exact", "Bandit-v0", {}, "fraction_of_optimal") == STOCHASTIC
    assert score_policy("supervised", "Digits-v0", {}, "test_accuracy") == GREEDY
    assert score_policy("ppo", "CartPole-v1", {}, "final_return") == GREEDY
    assert score_policy("ppo", "MiniGrid-DoorKey-5x5-v0", {}, "final_return") == STOCHASTIC
    assert score_policy("qac", "ALE/Pong-v5", {}, "eval_return") == STOCHASTIC
    assert score_policy("ppo", "MiniGrid-DoorKey-5x5-v0", {"eval_deterministic": True}, "eval_return") == GREEDY
    assert score_policy("ppo", "FourRooms-v0", {"eval_deterministic": False}, "final_return") == STOCHASTIC
    assert score_policy("ppo", "FourRooms-v0", {"eval_deterministic": False}, "greedy_value") == GREEDY
    for env in ("CartPole-v1", "FourRooms-v0", "MiniGrid-Empty-8x8-v0", "ALE/Breakout-v5", "BreakoutNoFrameskip-v4"):
        for hp in ({}, {"eval_deterministic": True}, {"eval_deterministic": False}):
            expected = GREEDY if eval_deterministic(env, hp) else STOCHASTIC
            assert score_policy("a2c", env, hp, "final_return") == expected, (env, hp)


def test_reference_metrics_of_a_run_config():
    config = {"algo": "ppo", "env": "CartPole-v1", "env_kwargs": {}, "resolved_hyperparams": {}}
    metrics = reference_metrics(config, {"final_return": 500.0, "eval_return": 20.0})
    assert metrics["normalized_score"] == 1.0 and metrics["reference_target"] == 500 and metrics["eval_deterministic"] == 1
    stochastic = reference_metrics({**config, "resolved_hyperparams": {"eval_deterministic": False}}, {"final_return": 9.0})
    assert stochastic["eval_deterministic"] == 0
    assert set(reference_metrics({**config, "env_kwargs": {"sutton_barto_reward": True}}, {"final_return": 9.0})) == {
        "eval_deterministic"
    }
    assert reference_metrics({**config, "algo": "supervised", "env": "Digits-v0"}, {"test_accuracy": 0.55}) == {
        "normalized_score": pytest.approx(0.5),
        "reference_random": pytest.approx(0.1),
        "reference_target": 1.0,
    }


def test_the_file_round_trips_with_its_header_and_a_bad_entry_is_refused(tmp_path):
    data = load_reference_scores()
    path = write_reference_scores(data, tmp_path / "scores.yml")
    assert path.read_text().startswith("# Reference scores") and load_reference_scores(path) == data
    assert path.read_text() == REFERENCE_FILE.read_text()  # the committed file is what the writer writes
    del data["envs"]["CartPole-v1"]["target"]["source"]
    with pytest.raises(ValueError, match="CartPole-v1.target"):
        load_reference_scores(write_reference_scores(data, tmp_path / "bad.yml"))


def test_random_returns_are_seeded_and_within_the_envs_range():
    benchmark = _benchmark()
    returns = benchmark.random_returns("CartPole-v1", 30, seed=3)
    assert len(returns) == 30 and np.all(returns >= 8) and np.all(returns <= 500) and np.all(returns == returns.round())
    np.testing.assert_array_equal(returns, benchmark.random_returns("CartPole-v1", 30, seed=3))
    assert not np.array_equal(returns, benchmark.random_returns("CartPole-v1", 30, seed=4))
    measured = benchmark.measure("CartPole-v1", 30, seed=3)
    assert measured.mean == pytest.approx(returns.mean()) and measured.stderr == pytest.approx(returns.std(ddof=1) / 30**0.5)
    data = load_reference_scores()
    benchmark.record(data, measured)
    assert (
        data["envs"]["CartPole-v1"]["random"]["episodes"] == 30
        and "30 episodes" in data["envs"]["CartPole-v1"]["random"]["source"]
    )


def test_minatar_games_are_normalised_by_the_random_policy_and_gymnax_blines_ppo():
    data = load_reference_scores()
    for game, published in {"Asterix": 15, "Breakout": 28, "Freeway": 58, "SpaceInvaders": 131}.items():
        entry = data["envs"][f"MinAtar/{game}-v1"]
        assert entry["target"]["score"] == published and "gymnax-blines" in entry["target"]["source"]
        assert "benchmarks/random_scores.py" in entry["random"]["source"] and 0 <= entry["random"]["score"] < published
        assert table_reference(f"MinAtar/{game}-v1", {}) is not None
        assert table_reference(f"MinAtar/{game}-v1", {"sticky_action_prob": 0.0}) is None
    assert score_policy("ppo", "MinAtar/Breakout-v1", {}, "final_return") == STOCHASTIC
