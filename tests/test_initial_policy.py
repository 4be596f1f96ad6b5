"""The adversarial start of PPO, A2C and QAC: the fitted actor's pi(a*|s), an untouched critic, and the CLI."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import yaml

import envs
from agents.exact_mdp import best_actions, second_best_actions
from agents.exact_pg import ExactPG
from agents.initial_policy import (
    FitTolerance,
    StartFitError,
    actor_parameters,
    adversarial_start,
    adversarial_target,
    check_pi0,
    fit_actor,
    least_squares,
)
from experiments.cli import main
from experiments.config import RunConfig
from experiments.run import resolve
from experiments.sb3_run import build_model, make_envs

TOL = FitTolerance()
TEN_ARMS = "rewards=[1,0.9,0.8,0.7,0.6,0.5,0.4,0.3,0.2,0.1]"
ALGO_POLICIES = [
    ("ppo", "softmax"),
    ("ppo", "escort"),
    ("a2c", "softmax"),
    ("a2c", "escort"),
    ("qac", "softmax"),
    ("qac", "escort"),
    ("qac", "neurd"),
]
#: Modules that make up a critic, where the policy has them.
CRITIC_NAMES = ("value_net", "q_net", "mlp_extractor.value_net", "critic_target", "vf_features_extractor")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(algo: str, policy: str, env_id: str = "FourRooms-v0", env_kwargs: dict | None = None, **hyperparams):
    config = RunConfig(algo=algo, policy=policy, env=env_id, env_kwargs=env_kwargs or {}, hyperparams=hyperparams, verbose=0)
    hp = resolve(config)
    train_env, eval_env = make_envs(config, hp, None)
    eval_env.close()
    return build_model(config, hp, train_env), train_env


def _exact_start(env_id: str, env_kwargs: dict, pi0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observations, a* and the target policy of the non-terminal states, from the model and value iteration."""
    base = gym.make(env_id, **env_kwargs).unwrapped
    mdp = base.transition_model()
    _, q_star = envs.value_iteration(mdp)
    live = ~mdp.terminal
    best = best_actions(q_star)
    target = ExactPG(mdp, init="adversarial", pi0=pi0).initial_policy()
    return base.observations()[live], best[live], target[live]


def _log_probs(model, observations: np.ndarray) -> np.ndarray:
    with th.no_grad():
        obs, _ = model.policy.obs_to_tensor(observations)
        return model.policy.get_distribution(obs).distribution.logits.numpy().astype(np.float64)


CASES = [(algo, policy, "FourRooms-v0", {}, 0.01) for algo, policy in ALGO_POLICIES]
CASES += [(algo, policy, "Bandit-v0", {}, 0.01) for algo, policy in ALGO_POLICIES]
CASES += [
    ("ppo", "escort", "FourRooms-v0", {"subgoals": [], "slip": 0.1}, 0.001),
    ("qac", "softmax", "FourRooms-v0", {"subgoals": [[7, 5, 0.2]]}, 0.001),
    ("a2c", "softmax", "Bandit-v0", {"rewards": [0.2, 1.0, 0.5, 0.9]}, 0.1),
]


@pytest.mark.parametrize(("algo", "policy", "env_id", "env_kwargs", "pi0"), CASES)
def test_adversarial_start_puts_pi0_on_the_best_action_in_every_live_state(algo, policy, env_id, env_kwargs, pi0):
    model, train_env = _model(algo, policy, env_id, env_kwargs)
    report = adversarial_start(model, gym.make(env_id, **env_kwargs), pi0, train_env)
    observations, best, target = _exact_start(env_id, env_kwargs, pi0)
    log_pi = _log_probs(model, observations)
    rows = np.arange(len(best))
    assert np.all(np.abs(log_pi[rows, best] - np.log(pi0)) <= TOL.log_pi_star + 1e-6)
    assert np.all(0.5 * np.abs(np.exp(log_pi) - target).sum(axis=1) <= TOL.total_variation + 1e-6)
    # the rest sits on the second-best action: the start is a near-deterministic sub-optimal policy
    assert np.all(log_pi.argmax(axis=1) != best)
    np.testing.assert_allclose(report.pi_star, np.exp(log_pi[rows, best]), rtol=1e-5)
    assert model.num_timesteps == 0


def test_target_is_exact_pgs_adversarial_start_on_the_live_states():
    env = gym.make("FourRooms-v0")
    target = adversarial_target(env, 0.01)
    mdp = env.unwrapped.transition_model()
    _, q_star = envs.value_iteration(mdp)
    live = ~mdp.terminal
    best = best_actions(q_star)[live]
    rows = np.arange(len(best))
    np.testing.assert_array_equal(target.best_actions, best)
    np.testing.assert_allclose(target.policy[rows, best], 0.01)
    np.testing.assert_allclose(target.policy[rows, second_best_actions(q_star, best_actions(q_star))[live]], 1 - 0.01 - 2e-4)
    np.testing.assert_allclose(target.policy.sum(axis=1), 1.0)
    np.testing.assert_array_equal(target.observations, env.unwrapped.observations()[live])


@pytest.mark.parametrize(("algo", "policy"), ALGO_POLICIES)
def test_fit_moves_only_the_actor_and_leaves_optimizer_and_step_count(algo, policy):
    model, train_env = _model(algo, policy)
    before = {name: value.clone() for name, value in model.policy.state_dict().items()}
    optimizer_before = model.policy.optimizer.state_dict()
    actor = {id(param) for param in actor_parameters(model.policy)}
    adversarial_start(model, gym.make("FourRooms-v0"), 0.01, train_env)
    after = model.policy.state_dict()
    named = dict(model.policy.named_parameters())
    critic = [n for n in before if any(n.startswith(f"{m}.") for m in CRITIC_NAMES)]
    assert critic and any("action_net" in n for n in before)
    for name in critic:  # every critic (and target critic) tensor, bit for bit
        assert th.equal(before[name], after[name]), name
    for name, value in before.items():  # and everything else the fit may not move
        if name not in named or id(named[name]) not in actor:
            assert th.equal(value, after[name]), name
    assert not th.equal(before["action_net.weight"], after["action_net.weight"])
    assert model.policy.optimizer.state_dict() == optimizer_before and not model.policy.optimizer.state
    assert all(param.grad is None for param in model.policy.parameters())
    assert model.num_timesteps == 0


def test_critic_parameters_are_not_in_the_fitted_set_even_with_a_shared_extractor():
    model, _ = _model("ppo", "softmax", "CartPole-v1", policy_kwargs={"share_features_extractor": True})
    fitted = {id(param) for param in actor_parameters(model.policy)}
    for name in ("value_net", "mlp_extractor.value_net", "features_extractor"):
        module = model.policy.get_submodule(name)
        assert not fitted & {id(param) for param in module.parameters()}
    assert {id(param) for param in model.policy.action_net.parameters()} <= fitted


def test_the_fit_sees_normalised_observations_where_the_run_normalises():
    model, train_env = _model("ppo", "escort", normalize=True)
    train_env.obs_rms.mean[:] = 0.5  # statistics that make the normalised observations differ from the raw ones
    adversarial_start(model, gym.make("FourRooms-v0"), 0.01, train_env)
    observations, best, _ = _exact_start("FourRooms-v0", {}, 0.01)
    log_pi = _log_probs(model, train_env.normalize_obs(observations))
    assert np.all(np.abs(log_pi[np.arange(len(best)), best] - np.log(0.01)) <= TOL.log_pi_star + 1e-6)


def test_an_actor_too_small_for_the_start_is_a_clear_error():
    model, _ = _model("ppo", "softmax", policy_kwargs={"net_arch": {"pi": [1], "vf": [64]}})
    with pytest.raises(StartFitError, match="did not reach its start policy within 30 Adam steps"):
        fit_actor(model.policy, adversarial_target(gym.make("FourRooms-v0"), 0.01), max_steps=30)


@pytest.mark.parametrize("n_actions", [2, 3, 4, 7, 10, 18])
@pytest.mark.parametrize("pi0", [1e-3, 0.1, 0.25, 0.3])
def test_check_pi0_accepts_what_exact_pg_can_start_from(n_actions, pi0):
    bandit = gym.make("Bandit-v0", rewards=list(np.linspace(1.0, 0.0, n_actions)))
    try:
        ExactPG(bandit, init="adversarial", pi0=pi0)
        feasible = True
    except ValueError:
        feasible = False
    if feasible:
        check_pi0(pi0, n_actions)
    else:
        with pytest.raises(ValueError, match="less than pi0"):
            check_pi0(pi0, n_actions)


@pytest.fixture(scope="module")
def adversarial_run(tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    argv = ["--algo", "qac", "--policy", "escort", "--env", "FourRooms-v0", "--init", "adversarial", "--pi0", "0.001"]
    assert main([*argv, "-n", "256", "--n-envs", "2", "--eval-freq", "0", "--eval-episodes", "1", "-f", str(logs)]) == 0
    (run_dir,) = (logs / "qac").iterdir()
    return run_dir


def test_a_run_reports_its_start_and_records_init_and_pi0(adversarial_run):
    assert adversarial_run.name == "FourRooms-v0_escort-p2_adversarial-0.001_s0"
    summary = json.loads((adversarial_run / "summary.json").read_text())
    low, mid, high = (summary[f"initial_pi_star_{k}"] for k in ("min", "median", "max"))
    assert np.exp(-TOL.log_pi_star) * 1e-3 <= low <= mid <= high <= np.exp(TOL.log_pi_star) * 1e-3
    assert summary["initial_tv_max"] <= TOL.total_variation and summary["initial_log_error_max"] <= TOL.log_pi_star
    assert summary["initial_fit_steps"] >= 1 and 0 < summary["initial_fit_time"] < 10
    assert summary["timesteps"] == 256  # the fit takes no environment step
    config = yaml.safe_load((adversarial_run / "config.yml").read_text())
    assert config["init"] == "adversarial" and config["pi0"] == 0.001


def test_a_uniform_run_is_unchanged(tmp_path):
    logs = tmp_path / "logs"
    argv = ["--algo", "a2c", "--env", "Bandit-v0", "-n", "64", "--eval-freq", "0", "--eval-episodes", "1"]
    assert main([*argv, "-f", str(logs)]) == 0
    (run_dir,) = (logs / "a2c").iterdir()
    assert run_dir.name == "Bandit-v0_escort-p2_s0"
    assert not any(key.startswith("initial_") for key in json.loads((run_dir / "summary.json").read_text()))
    config = yaml.safe_load((run_dir / "config.yml").read_text())
    assert config["init"] is None and config["pi0"] is None


def test_start_overrides_are_the_flags_given():
    assert RunConfig(algo="exact").start_overrides() == {}
    assert RunConfig(algo="exact", init="uniform").start_overrides() == {"init": "uniform"}
    assert RunConfig(algo="exact", init="adversarial", pi0=1e-3).start_overrides() == {"init": "adversarial", "pi0": 1e-3}
    assert RunConfig(init="adversarial").start_pi0 == 0.01


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--env", "CartPole-v1", "--init", "adversarial"], "transition model"),
        (["--init", "adversarial", "--pi0", "0"], "--pi0 must be in (0, 0.3]"),
        (["--init", "adversarial", "--pi0", "0.5"], "--pi0 must be in (0, 0.3]"),
        (["--init", "adversarial", "--pi0", "nan"], "--pi0 must be in (0, 0.3]"),
        (["--pi0", "0.01"], "add --init adversarial"),
        (["--init", "uniform", "--pi0", "0.01"], "add --init adversarial"),
        (["--init", "greedy"], "--init greedy"),
        (["--init", "random"], "--init random does not work with --algo ppo"),
        (["--algo", "supervised", "--env", "Digits-v0", "--init", "adversarial"], "--algo supervised"),
        (["--env", "Bandit-v0", "--env-kwargs", TEN_ARMS, "--init", "adversarial", "--pi0", "0.3"], "less than pi0"),
    ],
)
def test_bad_start_flags_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, argv, needle):
    logs = tmp_path / "logs"
    assert main(["-f", str(logs), "-n", "64", "--verbose", "0", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("train.py: error:")
    assert needle in err
    assert not logs.exists()


def test_an_actor_that_cannot_reach_the_start_fails_the_run_in_one_line(tmp_path, capsys):
    logs = tmp_path / "logs"
    small = ["--hyperparams", "policy_kwargs={net_arch: {pi: [1], vf: [8]}}"]
    assert main(["-f", str(logs), "-n", "64", "--verbose", "0", "--policy", "softmax", "--init", "adversarial", *small]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did not reach its start policy" in err
    assert not logs.exists()


@pytest.mark.parametrize("n_rows", [1, 3, 416])
def test_least_squares_fits_full_rank_and_rank_deficient_designs(n_rows):
    gen = th.Generator().manual_seed(n_rows)
    design = th.cat([th.tanh(th.randn(n_rows, 64, generator=gen)), th.ones(n_rows, 1)], dim=1).double()
    goal = th.randn(n_rows, 4, generator=gen).double()
    solution = least_squares(design, goal)
    reference = th.linalg.lstsq(design, goal, driver="gelsd").solution
    # the fitted values are the projection of the goal on the design's columns (exact when rows <= columns)
    th.testing.assert_close(design @ solution, design @ reference, atol=1e-6, rtol=1e-6)
    if n_rows <= 65:
        th.testing.assert_close(design @ solution, goal, atol=1e-6, rtol=1e-6)
