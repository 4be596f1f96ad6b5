"""Evaluate a saved run, and record a video of one of its episodes: ``train.py --eval RUN_FOLDER [--video]``.

A run folder (written by ``experiments.run.run``) holds ``config.yml`` (the run's config and resolved hyperparameters),
``model.zip`` (the model at the end of training; ``best_model.zip``, the model at its best periodic evaluation, with
``--best``) and, for normalised observations, ``vecnormalize.pkl``. Evaluation rebuilds the run's env with
evaluation preprocessing (Atari: full games, unclipped scores) and its normalisation statistics, and plays episodes
with the run's action rule (greedy for our envs, sampled for Atari and MiniGrid, as during training).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize

from envs.make import ATARI, ATARI_FRAME_SKIP, env_family
from envs.seeding import EVAL_STREAM, env_seeds
from experiments.config import RunConfig, load_yaml
from experiments.errors import UsageError
from experiments.results import CONFIG_FILE
from experiments.sb3_run import BEST_MODEL_FILE, MODEL_FILE, NORMALIZE_FILE, SB3_ALGOS, eval_deterministic, run_vec_env
from experiments.tabular_eval import greedy_report
from experiments.zoo import import_gym_packages, normalize_kwargs

#: Video file name in the run folder when ``--video`` names none.
VIDEO_FILE = "episode.gif"
#: Frames whose longer side is shorter than this are scaled up by an integer factor (FourRooms: 104 px).
MIN_VIDEO_SIDE = 200


@dataclass(frozen=True)
class SavedRun:
    """A finished run as its folder holds it."""

    folder: Path
    config: RunConfig
    hp: dict[str, Any]
    model_file: str = MODEL_FILE

    @property
    def deterministic(self) -> bool:
        """Whether its evaluations take the greedy action (the rule of its training run)."""
        return eval_deterministic(self.config.env, self.hp)


@dataclass(frozen=True)
class Evaluation:
    """Returns and lengths of evaluation episodes."""

    returns: list[float]
    lengths: list[int]
    deterministic: bool
    report: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def mean(self) -> float:
        """Mean return."""
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        """Standard deviation of the returns."""
        return float(np.std(self.returns))


@dataclass(frozen=True)
class Episode:
    """One played episode: its frames, return (Atari: game score), whether it ended, its frame rate, and the indices
    of the states it visited (envs with ``info["state"]``)."""

    frames: list[np.ndarray]
    episode_return: float
    finished: bool
    fps: float
    states: list[int]


@dataclass(frozen=True)
class Video:
    """A recorded episode."""

    path: Path
    n_frames: int
    episode_return: float
    finished: bool


def load_run(folder: str | Path, best: bool = False) -> SavedRun:
    """Read a run folder's config, import its ``--gym-packages``, and check that it holds a model this module can load.

    :param folder: the run folder
    :param best: the model at its best periodic evaluation (``best_model.zip``) instead of the last one
    :return: the run
    """
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise UsageError(f"{folder} is not a run folder (no {CONFIG_FILE}): pass a folder that train.py wrote")
    data = load_yaml(path.read_text()) or {}
    known = {f.name for f in dataclasses.fields(RunConfig)}
    config = RunConfig(**{key: value for key, value in data.items() if key in known})
    if config.algo not in SB3_ALGOS:
        raise UsageError(f"--eval reads runs of {', '.join(SB3_ALGOS)}, not of --algo {config.algo} ({folder})")
    if not (folder / MODEL_FILE).is_file():
        raise UsageError(f"{folder} has no {MODEL_FILE}: the run did not finish; train it again")
    if best and not (folder / BEST_MODEL_FILE).is_file():
        raise UsageError(
            f"{folder} has no {BEST_MODEL_FILE}: it had no periodic evaluation (--eval-freq 0, or above -n); leave out --best"
        )
    import_gym_packages(config.gym_packages)
    return SavedRun(folder, config, dict(data.get("resolved_hyperparams") or {}), BEST_MODEL_FILE if best else MODEL_FILE)


def load_model(run: SavedRun, device: str = "cpu", seed: int | None = None) -> BaseAlgorithm:
    """:param run: the run
    :param device: torch device
    :param seed: the evaluation seed (default: the run's); the sampled actions are seeded with the evaluation env's
        own seed, derived from it
    :return: its model, loaded by its algorithm's class"""
    model = SB3_ALGOS[run.config.algo].load_class().load(run.folder / run.model_file, device=device)
    model.set_random_seed(env_seeds(eval_seed(run, seed), 1, EVAL_STREAM)[0])
    return model


def eval_seed(run: SavedRun, seed: int | None = None) -> int:
    """The seed an evaluation derives its env's seed from, on the evaluation stream (``envs.seeding.EVAL_STREAM``):
    with the default, the run's own seed, so the env is the run's own evaluation env (``experiments.sb3_run.make_envs``),
    whose seed no training env of any run shares.

    :param run: the run
    :param seed: a seed, or None
    :return: the seed, or the run's seed"""
    return run.config.seed if seed is None else seed


def make_eval_env(run: SavedRun, seed: int | None = None) -> VecEnv:
    """One copy of the run's evaluation env (its ``--eval-env-kwargs``, default its ``--env-kwargs``), with evaluation
    preprocessing, its ``env_wrapper``, its frame stack and its normalisation statistics.

    :param run: the run
    :param seed: the evaluation seed, from which the env's seed is derived on the evaluation stream (default: the
        run's seed: the run's own evaluation env)
    :return: the env (``render()`` gives RGB frames)
    """
    config = run.config
    env = run_vec_env(
        config.env,
        1,
        eval_seed(run, seed),
        run.hp,
        env_kwargs=config.evaluation_env_kwargs,
        training=False,
        batched=False,
        seed_stream=EVAL_STREAM,
    )
    stats = run.folder / NORMALIZE_FILE
    if stats.is_file():
        env = VecNormalize.load(str(stats), env)
        env.training, env.norm_reward = False, False
    elif normalize_kwargs(run.hp.get("normalize")) is not None:
        env.close()
        raise UsageError(f"{run.folder} was trained with normalized observations but has no {NORMALIZE_FILE}")
    return env


def evaluate_run(
    folder: str | Path,
    episodes: int = 10,
    seed: int | None = None,
    deterministic: bool | None = None,
    device: str = "cpu",
    best: bool = False,
) -> Evaluation:
    """Play ``episodes`` episodes with a saved run's model.

    :param folder: the run folder
    :param episodes: number of episodes
    :param seed: the evaluation seed (default: the run's seed: its own evaluation env; see :func:`eval_seed`)
    :param deterministic: greedy actions (default: the run's rule)
    :param device: torch device
    :param best: evaluate ``best_model.zip`` (the model at its best periodic evaluation)
    :return: the returns (Atari: game scores) and lengths, and for envs with a transition model the exact report
    """
    if episodes <= 0:
        raise UsageError(f"--eval-episodes must be > 0 (got {episodes})")
    run = load_run(folder, best)
    model = load_model(run, device, seed)
    env = make_eval_env(run, seed)
    greedy = run.deterministic if deterministic is None else deterministic
    returns, lengths = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=greedy, return_episode_rewards=True)
    report = greedy_report(model, run.config.env, run.config.evaluation_env_kwargs, env)
    env.close()
    return Evaluation([float(r) for r in returns], [int(n) for n in lengths], greedy, report)


class FrameRecorder(gym.Wrapper):
    """Keep an RGB frame (and ``info["state"]``, where the env has one) after the first reset and after every step,
    before a vectorised env resets the episode away."""

    def __init__(self, env: gym.Env) -> None:
        """:param env: an env whose ``render()`` returns RGB arrays"""
        super().__init__(env)
        self.frames: list[np.ndarray] = []
        self.states: list[int] = []

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Reset, and keep the first frame of the recording."""
        obs, info = self.env.reset(**kwargs)
        if not self.frames:
            self._keep(info)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step, and keep the frame."""
        result = self.env.step(action)
        self._keep(result[-1])
        return result

    def _keep(self, info: dict[str, Any]) -> None:
        self.frames.append(np.asarray(self.env.render()))
        if "state" in info:
            self.states.append(int(info["state"]))


def play_episode(
    run: SavedRun, seed: int | None = None, deterministic: bool | None = None, device: str = "cpu", max_steps: int = 10_000
) -> Episode:
    """Play one episode of a saved run and keep its frames.

    :param run: the run
    :param seed: the evaluation seed (default: the run's seed: its own evaluation env; see :func:`eval_seed`)
    :param deterministic: greedy actions (default: the run's rule)
    :param device: torch device
    :param max_steps: agent steps after which the recording stops
    :return: the episode (frames at the env's ``render_fps``, per agent step: divided by the frame skip for Atari)
    """
    model = load_model(run, device, seed)
    env = make_eval_env(run, seed)
    inner = env.unwrapped
    assert isinstance(inner, DummyVecEnv)
    recorder = FrameRecorder(inner.envs[0])
    inner.envs[0] = recorder
    greedy = run.deterministic if deterministic is None else deterministic
    obs, state, starts = env.reset(), None, np.ones((1,), dtype=bool)
    total, finished = 0.0, False
    for _ in range(max_steps):
        action, state = model.predict(obs, state=state, episode_start=starts, deterministic=greedy)  # type: ignore[arg-type]
        obs, rewards, starts, infos = env.step(action)
        total += float(env.get_original_reward()[0]) if isinstance(env, VecNormalize) else float(rewards[0])
        if starts[0]:
            finished = True
            total = float(infos[0]["episode"]["r"]) if "episode" in infos[0] else total
            break
    fps = float(recorder.metadata.get("render_fps") or 10)
    fps = fps / ATARI_FRAME_SKIP if env_family(run.config.env) == ATARI else fps
    env.close()
    return Episode(recorder.frames, total, finished, fps, recorder.states)


def write_video(frames: Sequence[np.ndarray], path: str | Path, fps: float) -> Path:
    """Write frames as a GIF (imageio's Pillow plugin) or, with ``imageio-ffmpeg`` installed, an MP4.

    :param frames: RGB frames of one size
    :param path: ``.gif`` or ``.mp4`` file
    :param fps: frames per second
    :return: the path
    """
    import imageio.v3 as iio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise UsageError(f"--video {path}: choose a .gif or .mp4 file name")
    scale = max(1, math.ceil(MIN_VIDEO_SIDE / max(frames[0].shape[:2])))
    stack = np.stack([np.repeat(np.repeat(f, scale, axis=0), scale, axis=1) for f in frames])
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        iio.imwrite(path, stack, plugin="pillow", duration=1000.0 / fps, loop=0)
        return path
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise UsageError("writing .mp4 needs imageio-ffmpeg: pip install imageio-ffmpeg (or write a .gif)") from None
    import imageio.v2 as iio2

    iio2.mimwrite(path, list(stack), fps=fps, macro_block_size=1)
    return path


def record_video(
    folder: str | Path,
    path: str | Path | None = None,
    seed: int | None = None,
    deterministic: bool | None = None,
    device: str = "cpu",
    max_steps: int = 10_000,
    best: bool = False,
) -> Video:
    """Record one episode of a saved run as a GIF or MP4 (FourRooms and MiniGrid: the grid; Atari: the game screen).

    :param folder: the run folder
    :param path: the video file (default: ``episode.gif`` in the run folder)
    :param seed: the evaluation seed (default: the run's seed: its own evaluation env; see :func:`eval_seed`)
    :param deterministic: greedy actions (default: the run's rule)
    :param device: torch device
    :param max_steps: agent steps after which the recording stops
    :param best: record ``best_model.zip`` (the model at its best periodic evaluation)
    :return: what was written
    """
    run = load_run(folder, best)
    episode = play_episode(run, seed, deterministic, device, max_steps)
    out = write_video(episode.frames, run.folder / VIDEO_FILE if path is None else path, episode.fps)
    return Video(out, len(episode.frames), episode.episode_return, episode.finished)


def path_picture(
    folder: str | Path, path: str | Path, seed: int | None = None, device: str = "cpu", best: bool = False
) -> Path:
    """Draw the grid with the path of one greedy episode (envs with a ``cells`` grid and ``info["state"]``: FourRooms).

    :param folder: the run folder
    :param path: the picture (PNG)
    :param seed: the evaluation seed (default: the run's seed: its own evaluation env; see :func:`eval_seed`)
    :param device: torch device
    :param best: draw ``best_model.zip``'s path (the model at its best periodic evaluation)
    :return: the path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = load_run(folder, best)
    env = gym.make(run.config.env, **run.config.evaluation_env_kwargs).unwrapped
    if not hasattr(env, "cells"):
        raise UsageError(f"{run.config.env} is not a grid with cells (as FourRooms-v0 is): record a --video instead")
    episode = play_episode(run, seed, deterministic=True, device=device, max_steps=1_000)
    cells = np.array([env.cells[state % env.n_cells] for state in episode.states])
    pixels = episode.frames[0].shape[0] / env.walls.shape[0]
    figure, axes = plt.subplots(figsize=(4, 4))
    axes.imshow(episode.frames[0])
    axes.plot((cells[:, 1] + 0.5) * pixels - 0.5, (cells[:, 0] + 0.5) * pixels - 0.5, color="crimson", lw=2, marker="o", ms=3)
    axes.set_title(f"{run.config.run_name}: greedy path, return {episode.episode_return:.2f}", fontsize=8)
    axes.axis("off")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(figure)
    return Path(path)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see python train.py --eval --help)")


def build_parser() -> argparse.ArgumentParser:
    """:return: the parser of ``train.py --eval``"""
    parser = _Parser(
        prog="train.py",
        description="Evaluate a saved run (its model, resolved config and normalisation statistics); optionally record "
        "a video of one episode.",
    )
    parser.add_argument("--eval", required=True, metavar="RUN_FOLDER", help="a run folder written by train.py")
    parser.add_argument("--eval-episodes", type=int, default=10, help="episodes to evaluate (default: 10)")
    parser.add_argument(
        "--video",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help=f"record one episode as a .gif (or .mp4 with imageio-ffmpeg); default file: RUN_FOLDER/{VIDEO_FILE}; "
        "a .png file gets a picture of the greedy path instead (FourRooms-v0)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed >= 0 the evaluation env's seed is derived from (default: the run's seed, which gives the run's own "
        "evaluation env)",
    )
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, auto (default: cpu)")
    parser.add_argument(
        "--best",
        action="store_true",
        help=f"evaluate (and record) {BEST_MODEL_FILE}, the model at its best periodic evaluation, instead of {MODEL_FILE}",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """Evaluate and print ``mean +- std``; with ``--video``, also write the video.

    :param argv: arguments without the program name
    :return: exit status 0
    """
    parser = build_parser()
    if "-h" in argv or "--help" in argv:  # before --eval's missing argument can be reported
        parser.print_help()
        return 0
    args = parser.parse_args(list(argv))
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed must be >= 0 (got {args.seed})")
    result = evaluate_run(args.eval, args.eval_episodes, args.seed, device=args.device, best=args.best)
    run = load_run(args.eval, args.best)
    actions = "greedy" if result.deterministic else "sampled"
    print(
        f"{run.config.env} {run.config.algo} {run.config.run_name} ({run.model_file}): "
        f"return {result.mean:.3f} +- {result.std:.3f} "
        f"over {len(result.returns)} episode{'s' if len(result.returns) > 1 else ''} ({actions} actions)"
    )
    if "fraction_of_optimal" in result.report:
        print(f"greedy policy reaches {100 * result.report['fraction_of_optimal']:.1f}% of V* (start state)")
    if args.video and Path(args.video).suffix.lower() == ".png":
        print(f"picture: {path_picture(args.eval, args.video, args.seed, device=args.device, best=args.best)}")
    elif args.video is not None:
        video = record_video(args.eval, args.video or None, args.seed, device=args.device, best=args.best)
        ending = "episode ended" if video.finished else "stopped before the episode ended"
        print(f"video: {video.path} ({video.n_frames} frames, return {video.episode_return:.3f}, {ending})")
    return 0
