"""experiments.evaluate: saved Atari, MiniGrid and FourRooms runs reload, evaluate (Atari: real game scores) and record."""

from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from stable_baselines3.common.policies import ActorCriticCnnPolicy
from stable_baselines3.common.vec_env import VecNormalize

from envs.seeding import EVAL_STREAM, env_seeds
from experiments import evaluate
from experiments.cli import main
from experiments.config import RunConfig
from experiments.errors import UsageError
from experiments.evaluate import evaluate_run, load_model, load_run, make_eval_env, record_video
from experiments.results import CONFIG_FILE, write_yaml
from experiments.run import run
from experiments.sb3_run import make_envs
from policies import EscortActorCriticCnnPolicy
from policies.extractors import MiniGridCNN

torch.set_num_threads(1)

ATARI_ID = "ALE/SpaceInvaders-v5"  # every alien is worth 5 to 30 points: a clipped score could not be a multiple of them
TINY_PPO = {"n_steps": 64, "batch_size": 64, "n_epochs": 1}


def _train(folder: Path, env: str, policy: str, **kwargs: Any) -> Path:
    kwargs = {"hyperparams": TINY_PPO, **kwargs}
    config = RunConfig(
        env=env, policy=policy, seed=0, n_timesteps=256, n_envs=2, eval_freq=0, eval_episodes=1, log_folder=str(folder),
        verbose=0, **kwargs,
    )  # fmt: skip
    return Path(run(config)["run_dir"])


@pytest.fixture(scope="module")
def atari_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("atari")
    # 1200 emulator frames = 300 agent steps: evaluation episodes end quickly
    kwargs = {"env_kwargs": {"max_num_frames_per_episode": 1200}}
    return {policy: _train(folder, ATARI_ID, policy, **kwargs) for policy in ("softmax", "escort")}


@pytest.fixture(scope="module")
def minigrid_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("minigrid")
    return {policy: _train(folder, "MiniGrid-DoorKey-5x5-v0", policy) for policy in ("softmax", "escort")}


@pytest.mark.parametrize(
    ("policy", "policy_class"), [("softmax", ActorCriticCnnPolicy), ("escort", EscortActorCriticCnnPolicy)]
)
def test_atari_run_reloads_with_its_cnn_policy_and_resolved_preset(atari_runs, policy, policy_class) -> None:
    saved = load_run(atari_runs[policy])
    assert saved.hp["frame_stack"] == 4 and saved.hp["clip_range"] == "lin_0.1"  # the `atari` block of ppo.yml
    assert saved.hp["n_steps"] == 64 and saved.hp["n_envs"] == 2  # overrides win
    assert saved.config.env_kwargs == {"max_num_frames_per_episode": 1200}
    assert not saved.deterministic  # Atari is evaluated with sampled actions, as rl-zoo3 does
    model = load_model(saved)
    assert type(model.policy) is policy_class
    if policy == "escort":
        assert model.policy.escort_p == 2.0


def test_atari_evaluation_reports_unclipped_game_scores(atari_runs) -> None:
    folder = atari_runs["escort"]
    result = evaluate_run(folder, episodes=1, seed=3)
    saved = load_run(folder)
    model, env = load_model(saved, seed=3), make_eval_env(saved, seed=3)
    obs, rewards, done, info = env.reset(), [], np.array([False]), {}
    while not done[0]:
        action, _ = model.predict(obs, deterministic=saved.deterministic)
        obs, reward, done, infos = env.step(action)
        rewards.append(float(reward[0]))
        info = infos[0]
    env.close()
    assert result.returns == [sum(rewards)] == [info["episode"]["r"]]
    assert max(rewards) >= 5.0
    assert result.returns[0] % 5 == 0 and result.returns[0] > np.count_nonzero(rewards)  # more than the clipped sum


def test_atari_video_shows_the_game_screen(atari_runs, tmp_path) -> None:
    video = record_video(atari_runs["escort"], tmp_path / "atari.gif", max_steps=30)
    frames = iio.imread(video.path, index=None)
    assert frames.shape[1:3] == (210, 160)
    assert 2 <= len(frames) <= video.n_frames == 31
    assert not video.finished


@pytest.mark.parametrize(
    ("policy", "policy_class"), [("softmax", ActorCriticCnnPolicy), ("escort", EscortActorCriticCnnPolicy)]
)
def test_minigrid_run_reloads_with_the_small_cnn(minigrid_runs, policy, policy_class) -> None:
    saved = load_run(minigrid_runs[policy])
    assert saved.hp["policy_kwargs"] == {"features_extractor_class": "MiniGridCNN", "normalize_images": False}
    assert saved.hp["learning_rate"] == 2.5e-4 and saved.hp["normalize"] is False  # the `minigrid` block of ppo.yml
    assert saved.hp["normalize_advantage"] is False
    model = load_model(saved)
    assert type(model.policy) is policy_class
    assert isinstance(model.policy.features_extractor, MiniGridCNN) and not model.policy.normalize_images


def test_eval_env_uses_the_saved_normalisation(tmp_path) -> None:
    folder = _train(tmp_path, "CartPole-v1", "escort", hyperparams={**TINY_PPO, "normalize": True})
    saved = load_run(folder)
    env = make_eval_env(saved)
    stored = VecNormalize.load(str(folder / "vecnormalize.pkl"), make_eval_env(saved).venv)
    assert isinstance(env, VecNormalize) and not env.training and not env.norm_reward
    np.testing.assert_array_equal(env.obs_rms.mean, stored.obs_rms.mean)
    assert np.all(env.obs_rms.mean != 0)
    assert len(evaluate_run(folder, episodes=2).returns) == 2


def test_unknown_extractor_name_is_a_usage_error(tmp_path) -> None:
    hyperparams = {**TINY_PPO, "policy_kwargs": {"features_extractor_class": "TinyCNN"}}
    with pytest.raises(UsageError, match="unknown features_extractor_class 'TinyCNN': choose one of MiniGridCNN"):
        _train(tmp_path, "MiniGrid-DoorKey-5x5-v0", "escort", hyperparams=hyperparams)
    assert not any(tmp_path.rglob("model.zip"))


def test_minigrid_evaluation_is_reproducible_for_a_seed(minigrid_runs) -> None:
    first = evaluate_run(minigrid_runs["escort"], episodes=3, seed=11)
    second = evaluate_run(minigrid_runs["escort"], episodes=3, seed=11)
    assert first.returns == second.returns and first.lengths == second.lengths
    assert all(0.0 <= r <= 1.0 for r in first.returns) and all(1 <= n <= 250 for n in first.lengths)


def _reset_seeds(env) -> list[int]:
    env.reset()
    return [int(seed) for seed in env.get_attr("np_random_seed")]


def test_eval_env_is_the_runs_own_evaluation_env_and_shares_no_seed_with_training(minigrid_runs) -> None:
    saved = load_run(minigrid_runs["escort"])
    train_env, eval_env = make_envs(saved.config, saved.hp, None)
    own, training = _reset_seeds(eval_env), _reset_seeds(train_env)
    assert _reset_seeds(make_eval_env(saved)) == own == env_seeds(saved.config.seed, 1, EVAL_STREAM)
    assert len(training) == saved.hp["n_envs"] and not set(own) & set(training)
    assert _reset_seeds(make_eval_env(saved, seed=5)) == env_seeds(5, 1, EVAL_STREAM)
    first, again = (make_eval_env(saved, seed=5).reset() for _ in range(2))
    np.testing.assert_array_equal(first, again)


def test_cli_eval_prints_mean_and_std_and_writes_a_video(minigrid_runs, tmp_path, capsys) -> None:
    gif = tmp_path / "doorkey.gif"
    assert main(["--eval", str(minigrid_runs["softmax"]), "--eval-episodes", "2", "--video", str(gif)]) == 0
    out = capsys.readouterr().out
    assert "+-" in out and "over 2 episodes (sampled actions)" in out and f"video: {gif}" in out
    frames = iio.imread(gif, index=None)
    assert frames.ndim == 4 and frames.shape[-1] in (3, 4) and min(frames.shape[1:3]) >= 200


def test_fourrooms_video_ends_on_the_last_step_and_eval_reports_v_star(tmp_path, capsys) -> None:
    folder = _train(tmp_path, "FourRooms-v0", "escort")
    assert main(["--eval", str(folder), "--eval-episodes", "1", "--video"]) == 0
    out = capsys.readouterr().out
    assert "(greedy actions)" in out and "of V* (start state)" in out
    video = record_video(folder, tmp_path / "again.gif")
    returns = evaluate_run(folder, episodes=1)
    assert (folder / evaluate.VIDEO_FILE).is_file()
    assert video.finished and video.n_frames == returns.lengths[0] + 1  # the reset frame, then one per step
    assert video.episode_return == pytest.approx(returns.returns[0])
    assert main(["--eval", str(folder), "--eval-episodes", "1", "--video", str(tmp_path / "path.png")]) == 0
    assert iio.imread(tmp_path / "path.png").ndim == 3


def test_path_picture_needs_a_grid_env(minigrid_runs, tmp_path) -> None:
    with pytest.raises(UsageError, match="not a grid with cells"):
        evaluate.path_picture(minigrid_runs["escort"], tmp_path / "x.png")


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def test_eval_errors_are_one_line(minigrid_runs, tmp_path, capsys) -> None:
    folder = str(minigrid_runs["escort"])
    assert "is not a run folder" in _error(["--eval", str(tmp_path)], capsys)
    assert "--eval-episodes must be > 0" in _error(["--eval", folder, "--eval-episodes", "0"], capsys)
    assert "choose a .gif or .mp4" in _error(["--eval", folder, "--eval-episodes", "1", "--video", "x.avi"], capsys)
    assert "--seed must be >= 0" in _error(["--eval", folder, "--seed", "-1"], capsys)
    exact = tmp_path / "exact_run"
    exact.mkdir()
    write_yaml(exact / CONFIG_FILE, {"algo": "exact", "env": "FourRooms-v0"})
    assert "not of --algo exact" in _error(["--eval", str(exact)], capsys)


def test_mp4_without_imageio_ffmpeg_names_the_package(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(__import__("sys").modules, "imageio_ffmpeg", None)
    with pytest.raises(UsageError, match="pip install imageio-ffmpeg"):
        evaluate.write_video([np.zeros((8, 8, 3), dtype=np.uint8)] * 2, tmp_path / "x.mp4", fps=4)


def test_eval_help_lists_its_flags_and_train_help_points_to_it(capsys) -> None:
    assert main(["--eval", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--eval RUN_FOLDER" in out and "--video" in out and "--eval-episodes" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "train.py --eval RUN_FOLDER" in capsys.readouterr().out


@pytest.mark.parametrize("algo", ["ppo", "qac"])
def test_normalized_image_observations_train_with_periodic_evaluation_and_reload(tmp_path, algo) -> None:
    # EvalCallback copies VecNormalize's statistics wrapper by wrapper: the eval env must wrap as SB3 wraps training.
    # Normalised, the 7x7x3 view is a float vector to SB3 (no image transpose), for an MLP.
    hyperparams = {"n_steps": 32, "batch_size": 64, "n_epochs": 1, "normalize": True}
    if algo == "ppo":  # the minigrid preset's MiniGridCNN reads images
        hyperparams["policy_kwargs"] = {"features_extractor_class": "FlattenExtractor"}
    config = RunConfig(
        algo=algo, env="MiniGrid-DoorKey-5x5-v0", policy="escort", seed=0, n_timesteps=128, n_envs=2, eval_freq=64,
        eval_episodes=1, log_folder=str(tmp_path), verbose=0, hyperparams=hyperparams,
    )  # fmt: skip
    summary = run(config)
    run_dir = Path(summary["run_dir"])
    assert (run_dir / "vecnormalize.pkl").is_file()
    evaluations = np.load(run_dir / "evaluations.npz")
    assert list(evaluations["timesteps"]) == [64, 128]
    assert len(evaluate_run(run_dir, episodes=1).returns) == 1
