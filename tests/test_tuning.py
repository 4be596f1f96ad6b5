"""Tune-then-test pieces: the grid, the tuning seeds, run scores, the selection rule and selected.yml."""

import numpy as np
import pandas as pd
import pytest
import yaml

from experiments.config import RunConfig
from experiments.errors import UsageError
from experiments.reference import table_reference
from experiments.tuning import (
    POINT_COLUMN,
    SELECTED_FILE,
    TUNING_SEED_BASE,
    TuneSpec,
    check_configs,
    curve_area,
    final_configs,
    grid_configs,
    make_spec,
    parse_grid,
    point_suffix,
    point_text,
    select,
    tuning_seeds,
    write_selected,
)

COLUMNS = ["study", "env", "algo", "policy", "p", "seed", "timesteps", "metric", "value", POINT_COLUMN]


def test_grid_values_are_yaml_in_the_order_given_and_repeats_appear_once():
    grid = parse_grid(["learning_rate=1e-4,3e-4,1e-4", "optimizer=sgd,adam", "net_arch=[64, 64],[32]", "normalize=true"])
    assert grid == {
        "learning_rate": [1e-4, 3e-4],
        "optimizer": ["sgd", "adam"],
        "net_arch": [[64, 64], [32]],
        "normalize": [True],
    }
    assert all(isinstance(v, float) for v in grid["learning_rate"])
    spec = TuneSpec(grid, (TUNING_SEED_BASE,))
    points = spec.points()
    assert len(points) == 8 and points[0] == {
        "learning_rate": 1e-4,
        "optimizer": "sgd",
        "net_arch": [64, 64],
        "normalize": True,
    }
    assert points[1]["net_arch"] == [32] and points[-1]["learning_rate"] == 3e-4  # the first key varies slowest
    assert len({point_suffix(p) for p in points}) == 8  # every point has its own run names
    assert point_text(points[0]) == "learning_rate=0.0001 optimizer=sgd net_arch=[64, 64] normalize=true"


@pytest.mark.parametrize(
    ("pairs", "needle"),
    [
        (["learning_rate"], "KEY=V1,V2"),
        (["=1,2"], "KEY=V1,V2"),
        (["learning_rate="], "needs values"),
        (["learning_rate=1e-4,"], "needs values"),
        (["learning_rate=[1e-4"], "not valid YAML"),
        (["learning_rate=1", "learning_rate=2"], "twice"),
    ],
)
def test_a_malformed_grid_is_a_usage_error(pairs, needle):
    with pytest.raises(UsageError, match=needle):
        parse_grid(pairs)


def test_tuning_seeds_are_disjoint_from_every_final_seed_a_tuned_study_accepts():
    seeds = tuning_seeds(5)
    assert seeds == tuple(range(TUNING_SEED_BASE, TUNING_SEED_BASE + 5))
    spec = make_spec(["learning_rate=1e-3,1e-4"], 5, "auc", False)
    check_configs(spec, [RunConfig(seed=TUNING_SEED_BASE - 1)])
    with pytest.raises(UsageError, match="below"):
        check_configs(spec, [RunConfig(seed=TUNING_SEED_BASE)])
    for bad in (0, -1, True):
        with pytest.raises(UsageError, match="--tune-seeds"):
            tuning_seeds(bad)
    with pytest.raises(UsageError, match="--tune-metric"):
        make_spec(["learning_rate=1e-3"], 2, "best", False)


@pytest.mark.parametrize(
    ("pairs", "config", "needle"),
    [
        (["seed=1,2"], RunConfig(), "run field"),
        (["n_timesteps=100,200"], RunConfig(n_timesteps=50), "-n"),
        (["learning_rate=1e-3,1e-4"], RunConfig(hyperparams={"learning_rate": 1e-3}), "also given in --hyperparams"),
    ],
)
def test_keys_a_grid_cannot_vary_are_refused(pairs, config, needle):
    with pytest.raises(UsageError, match=needle):
        check_configs(make_spec(pairs, 2, "auc", False), [config])


def test_across_envs_needs_a_reference_on_every_env():
    configs = [RunConfig(env="CartPole-v1"), RunConfig(env="FourRooms-v0")]
    check_configs(make_spec(["learning_rate=1e-3"], 2, "final", True), configs)  # FourRooms: V* on its model
    with pytest.raises(UsageError, match="FourRooms-v0 has no reference"):
        check_configs(make_spec(["learning_rate=1e-3"], 2, "auc", True), configs)


def test_the_grid_is_every_group_point_and_tuning_seed_and_final_runs_get_their_groups_values():
    spec = make_spec(["learning_rate=1e-3,1e-4"], 3, "auc", False)
    configs = [RunConfig(policy=policy, seed=seed) for policy in ("softmax", "escort") for seed in (0, 1)]
    grid = grid_configs(spec, configs)
    assert len(grid) == 2 * 2 * 3
    assert {c.seed for c in grid} == set(spec.seeds) and not {c.seed for c in grid} & {0, 1}
    assert {(c.policy, c.hyperparams["learning_rate"]) for c in grid} == {
        (p, lr) for p in ("softmax", "escort") for lr in (1e-3, 1e-4)
    }
    returns = {("softmax", 1e-3): [0.2, 0.4, 0.3], ("softmax", 1e-4): [0.5, 0.6, 0.7],
               ("escort", 1e-3): [0.9, 0.8, 0.7], ("escort", 1e-4): [0.1, 0.2, 0.3]}  # fmt: skip
    table = _table(returns, spec.seeds, "FourRooms-v0")
    chosen = {s.group["policy"]: s.selected["learning_rate"] for s in select(table, spec, {}, reps=100)}
    assert chosen == {"softmax": 1e-4, "escort": 1e-3}
    finals = final_configs(configs, select(table, spec, {}, reps=100), across_envs=False)
    assert [(c.policy, c.seed) for c in finals] == [(c.policy, c.seed) for c in configs]
    assert all(c.hyperparams["learning_rate"] == chosen[c.policy] for c in finals)


def _table(curves: dict, seeds, env: str = "CartPole-v1", timesteps=(100, 200)) -> pd.DataFrame:
    """One run per (policy, learning rate) and seed, each with a flat evaluation curve at the given returns."""
    rows = []
    for (policy, lr), values in curves.items():
        for seed, value in zip(seeds, values):
            for t in timesteps:
                rows.append(["s", env, "ppo", policy, 2.0, seed, t, "eval_return", value, f"learning_rate={lr:g}"])
    return pd.DataFrame(rows, columns=COLUMNS)


def test_a_points_score_is_the_iqm_of_its_runs_areas_with_a_ci_around_it():
    spec = make_spec(["learning_rate=1e-3,1e-4"], 4, "auc", False)
    random, target = table_reference("CartPole-v1", {}).random, 500.0
    returns = {("softmax", 1e-3): [100.0, 200.0, 300.0, 400.0], ("softmax", 1e-4): [500.0, 500.0, 500.0, 30.0]}
    (selection,) = select(_table(returns, spec.seeds), spec, {}, reps=200)
    assert selection.normalised
    for score in selection.scores:
        normalised = np.sort((np.array(returns[("softmax", score.point["learning_rate"])]) - random) / (target - random))
        assert score.iqm == pytest.approx(normalised[1:3].mean())  # IQM of 4 runs: the middle two
        assert score.low <= score.iqm <= score.high and score.runs == 4
    assert selection.selected == {"learning_rate": 1e-4}


def test_the_area_is_the_curves_average_height_including_a_later_final_evaluation():
    rows = [["s", "FourRooms-v0", "ppo", "softmax", 2.0, 0, t, "eval_return", v, "x"] for t, v in ((100, 0.0), (200, 1.0))]
    rows.append(["s", "FourRooms-v0", "ppo", "softmax", 2.0, 0, 400, "final_return", 1.0, "x"])
    area, normalised = curve_area(pd.DataFrame(rows, columns=COLUMNS), "FourRooms-v0", {})
    assert area == pytest.approx((0.5 * 100 + 1.0 * 200) / 300) and not normalised  # no return reference on FourRooms


def test_ties_go_to_the_point_listed_first_and_selection_is_deterministic():
    for order in (["1e-3,1e-4"], ["1e-4,1e-3"]):
        spec = make_spec([f"learning_rate={order[0]}"], 2, "auc", False)
        table = _table({("softmax", 1e-3): [100.0, 100.0], ("softmax", 1e-4): [100.0, 100.0]}, spec.seeds)
        (selection,) = select(table, spec, {}, reps=100)
        assert selection.selected == spec.points()[0]
        assert select(table.sample(frac=1.0, random_state=1), spec, {}, reps=100)[0].to_dict() == selection.to_dict()


def test_across_envs_selects_one_point_for_all_envs_by_the_iqm_of_normalised_scores():
    spec = make_spec(["learning_rate=1e-3,1e-4"], 2, "auc", True)
    cartpole = _table({("softmax", 1e-3): [500.0, 500.0], ("softmax", 1e-4): [30.0, 30.0]}, spec.seeds)
    acrobot = _table({("softmax", 1e-3): [-480.0, -480.0], ("softmax", 1e-4): [-110.0, -110.0]}, spec.seeds, "Acrobot-v1")
    (selection,) = select(pd.concat([cartpole, acrobot]), spec, {}, reps=100)
    assert selection.group["env"] == ["Acrobot-v1", "CartPole-v1"]
    assert selection.selected == {"learning_rate": 1e-3}  # CartPole's 1.0 outweighs Acrobot's ~0.97 - 0.05
    per_env = {s.group["env"]: s.selected for s in select(pd.concat([cartpole, acrobot]), spec.__class__(
        spec.grid, spec.seeds, "auc", False), {}, reps=100)}  # fmt: skip
    assert per_env == {"CartPole-v1": {"learning_rate": 1e-3}, "Acrobot-v1": {"learning_rate": 1e-4}}


def test_selected_yml_holds_every_points_score_and_refuses_a_changed_selection(tmp_path):
    spec = make_spec(["learning_rate=1e-3,1e-4"], 2, "auc", False)
    table = _table({("softmax", 1e-3): [100.0, 120.0], ("softmax", 1e-4): [300.0, 320.0]}, spec.seeds)
    path = write_selected(tmp_path, spec, select(table, spec, {}, reps=100))
    assert path.name == SELECTED_FILE
    data = yaml.safe_load(path.read_text())
    (group,) = data["groups"]
    assert group["selected"] == {"learning_rate": 1e-4} and data["tuning_seeds"] == list(spec.seeds)
    assert [s["point"] for s in group["scores"]] == spec.points()
    assert all(s["ci"][0] <= s["iqm"] <= s["ci"][1] for s in group["scores"])
    before = path.read_text()
    write_selected(tmp_path, spec, select(table, spec, {}, reps=100))
    assert path.read_text() == before
    flipped = _table({("softmax", 1e-3): [400.0, 420.0], ("softmax", 1e-4): [300.0, 320.0]}, spec.seeds)
    with pytest.raises(UsageError, match="changed"):
        write_selected(tmp_path, spec, select(flipped, spec, {}, reps=100))


def test_variants_of_an_env_are_tuned_apart_and_get_their_own_selection():
    spec = make_spec(["learning_rate=1e-3,1e-4"], 2, "final", False)
    configs = [RunConfig(policy="softmax", env_kwargs=kw) for kw in ({}, {"slip": 0.1})]
    grid = grid_configs(spec, configs)
    assert len(grid) == 2 * 2 * 2 and {str(c.env_kwargs) for c in grid} == {"{}", "{'slip': 0.1}"}
    best = {"": 1e-3, '{"slip":0.1}': 1e-4}  # each variant prefers another learning rate
    rows = [
        ["s", "FourRooms-v0", kwargs, "ppo", "softmax", 2.0, seed, 100, "normalized_score", 0.9 if lr == chosen else 0.1,
         f"learning_rate={lr:g}"]
        for kwargs, chosen in best.items() for lr in (1e-3, 1e-4) for seed in spec.seeds
    ]  # fmt: skip
    table = pd.DataFrame(rows, columns=[*COLUMNS[:2], "env_kwargs", *COLUMNS[2:]])
    selections = select(table, spec, {}, reps=100)
    assert {s.group["env"]: s.selected["learning_rate"] for s in selections} == {
        "FourRooms-v0": 1e-3,
        "FourRooms-v0 (slip=0.1)": 1e-4,
    }
    finals = final_configs(configs, selections, across_envs=False)
    assert [c.hyperparams["learning_rate"] for c in finals] == [1e-3, 1e-4]
