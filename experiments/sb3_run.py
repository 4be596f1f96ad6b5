"""One run of an SB3 on-policy algorithm (PPO, A2C, QAC) with a softmax, escort or NeuRD policy."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, VecTransposeImage

from envs.make import make_vec_env
from envs.seeding import EVAL_STREAM
from experiments.checkpoints import checkpoint_callback, discard, resume_point
from experiments.config import RunConfig
from experiments.errors import UsageError
from experiments.hyperparams import schedule
from experiments.reference import eval_greedy
from experiments.results import write_metrics
from experiments.tabular_eval import greedy_report

#: Hyperparameter keys the runner consumes; every other key goes to the algorithm's constructor.
RUNNER_KEYS = ("n_timesteps", "n_envs", "policy", "policy_kwargs", "normalize", "frame_stack", "eval_deterministic")
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf")
#: Hyperparameters that count something: whole numbers >= 1 (SB3 divides by some of them before checking).
COUNT_KEYS = ("n_envs", "n_steps", "batch_size", "n_epochs")
SB3_ALIASES = {"mlp": "MlpPolicy", "cnn": "CnnPolicy", "multi": "MultiInputPolicy"}
MODEL_FILE = "model.zip"
NORMALIZE_FILE = "vecnormalize.pkl"


def eval_deterministic(env_id: str, hp: dict[str, Any]) -> bool:
    """:param env_id: the env id
    :param hp: resolved hyperparameters (``eval_deterministic`` wins when given)
    :return: whether evaluations take the greedy action: yes for our envs and the rest, no for Atari and MiniGrid
        (rl-zoo3 evaluates those stochastically: a greedy Atari policy can stall, e.g. never press FIRE); the rule of
        ``experiments.reference.eval_greedy``, which labels the scores"""
    return eval_greedy(env_id, hp)


def observation_kind(space: gym.Space) -> str:
    """:param space: the (vectorised, preprocessed) observation space
    :return: ``"multi"`` for Dict spaces, ``"cnn"`` for images, ``"mlp"`` otherwise"""
    if isinstance(space, gym.spaces.Dict):
        return "multi"
    return "cnn" if is_image_space(space, check_channels=False) else "mlp"


def actor_critic_policy(policy: str, p: float, kind: str) -> tuple[Any, dict[str, Any]]:
    """Policy class and kwargs for PPO and A2C: stock SB3 for softmax, the escort classes for escort.

    :param policy: ``softmax`` or ``escort``
    :param p: escort power
    :param kind: observation kind (``mlp``, ``cnn``, ``multi``)
    :return: the class (or SB3 alias) and extra ``policy_kwargs``
    """
    if policy == "softmax":
        return SB3_ALIASES[kind], {}
    from policies import EscortActorCriticCnnPolicy, EscortActorCriticPolicy, EscortMultiInputActorCriticPolicy

    classes = {"mlp": EscortActorCriticPolicy, "cnn": EscortActorCriticCnnPolicy, "multi": EscortMultiInputActorCriticPolicy}
    return classes[kind], {"escort_p": p}


def qac_policy(policy: str, p: float, kind: str) -> tuple[Any, dict[str, Any]]:
    """Policy alias and kwargs for QAC, whose parameterization is a policy keyword.

    :param policy: ``softmax``, ``escort`` or ``neurd``
    :param p: escort power
    :param kind: observation kind
    :return: the SB3 alias and extra ``policy_kwargs``
    """
    return SB3_ALIASES[kind], {"parameterization": policy, "escort_p": p}


@dataclass(frozen=True)
class SB3Algo:
    """How to build one SB3 algorithm: its class (imported on demand) and its policy for a parameterization."""

    load_class: Callable[[], type[BaseAlgorithm]]
    policy_for: Callable[[str, float, str], tuple[Any, dict[str, Any]]]


def _ppo() -> type[BaseAlgorithm]:
    from stable_baselines3 import PPO

    return PPO


def _a2c() -> type[BaseAlgorithm]:
    from stable_baselines3 import A2C

    return A2C


def _qac() -> type[BaseAlgorithm]:
    from agents import QAC

    return QAC


SB3_ALGOS: dict[str, SB3Algo] = {
    "ppo": SB3Algo(_ppo, actor_critic_policy),
    "a2c": SB3Algo(_a2c, actor_critic_policy),
    "qac": SB3Algo(_qac, qac_policy),
}


def make_envs(config: RunConfig, hp: dict[str, Any], run_dir: Path | None) -> tuple[VecEnv, VecEnv]:
    """The training env (Monitor CSV in ``run_dir``) and a single evaluation env with evaluation preprocessing.

    Both derive their env seeds from the run's seed (``envs.seeding.env_seeds``), the evaluation env from its own
    stream (``EVAL_STREAM``): no env seed is shared between the two, nor with another run's envs.

    :param config: the run
    :param hp: resolved hyperparameters (``n_envs``, ``normalize``, ``frame_stack``)
    :param run_dir: the run folder, or None for no monitor files
    :return: (train_env, eval_env)
    """
    if config.seed < 0:
        raise UsageError(f"--seed must be >= 0 (got {config.seed}): the env seeds are derived from it by SeedSequence")
    common = {"env_kwargs": config.env_kwargs, "frame_stack": hp.get("frame_stack"), "batched": not config.no_batched_env}
    monitor_dir = str(run_dir) if run_dir is not None else None
    train_env = make_vec_env(config.env, int(hp.get("n_envs", 1)), config.seed, monitor_dir=monitor_dir, **common)
    eval_env = make_vec_env(config.env, 1, config.seed, training=False, seed_stream=EVAL_STREAM, **common)
    if hp.get("normalize"):
        train_env = VecNormalize(train_env, gamma=float(hp.get("gamma", 0.99)))
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
    if is_image_space(eval_env.observation_space) and not is_image_space_channels_first(eval_env.observation_space):
        # SB3 adds VecTransposeImage outside the env it is given, when that env's (VecNormalize's, if normalising)
        # observations are channel-last images; the eval env is checked and wrapped the same way, since EvalCallback
        # copies the normalisation statistics wrapper by wrapper
        eval_env = VecTransposeImage(eval_env)
    return train_env, eval_env


def build_model(config: RunConfig, hp: dict[str, Any], env: VecEnv, tensorboard_log: str | None = None) -> BaseAlgorithm:
    """Construct the algorithm for a run from its config and resolved hyperparameters.

    :param config: the run
    :param hp: resolved hyperparameters
    :param env: the training env
    :param tensorboard_log: TensorBoard folder (None: off)
    :return: the untrained model
    """
    check_counts(config.algo, hp)
    algo = SB3_ALGOS[config.algo]
    policy, extra = algo.policy_for(config.policy, config.p, observation_kind(env.observation_space))
    kwargs = {k: schedule(v) if k in SCHEDULE_KEYS else v for k, v in hp.items() if k not in RUNNER_KEYS}
    policy_kwargs = {**named_extractor(hp.get("policy_kwargs") or {}), **extra}
    try:
        return algo.load_class()(
            policy,
            env,
            policy_kwargs=policy_kwargs,
            seed=config.seed,
            device=config.device,
            tensorboard_log=tensorboard_log,
            verbose=1 if config.verbose >= 2 else 0,
            **kwargs,
        )
    except (TypeError, ValueError, AssertionError, ArithmeticError) as err:
        # SB3 checks values such as batch_size > 1 with assert, or divides by them (PPO: rollout size // batch_size)
        raise UsageError(
            f"hyperparameters do not fit {config.algo}: {err}; fix --hyperparams or hyperparams/{config.algo}.yml"
        ) from None


def check_sb3(config: RunConfig, hp: dict[str, Any]) -> None:
    """Build the run's envs and model with every hyperparameter, then drop them (see ``experiments.run.check``).

    :param config: the run
    :param hp: resolved hyperparameters
    """
    train_env, eval_env = make_envs(config, hp, None)
    try:
        build_model(config, hp, train_env)
    finally:
        train_env.close()
        eval_env.close()


def check_counts(algo: str, hp: dict[str, Any]) -> None:
    """:param algo: the algorithm
    :param hp: resolved hyperparameters
    :raises UsageError: naming the first of ``COUNT_KEYS`` that is not a whole number >= 1"""
    for key in COUNT_KEYS:
        value = hp.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{key} must be a whole number >= 1 (got {value!r}); fix --hyperparams or hyperparams/{algo}.yml")


def named_extractor(policy_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Replace a ``features_extractor_class`` given by name (hyperparameter files are data) with the class.

    :param policy_kwargs: ``policy_kwargs`` as the hyperparameter file gives them
    :return: the same, with the extractor class looked up in ``policies.extractors.FEATURES_EXTRACTORS``
    """
    name = policy_kwargs.get("features_extractor_class")
    if not isinstance(name, str):
        return dict(policy_kwargs)
    from policies.extractors import FEATURES_EXTRACTORS

    if name not in FEATURES_EXTRACTORS:
        raise UsageError(f"unknown features_extractor_class '{name}': choose one of {', '.join(FEATURES_EXTRACTORS)}")
    return {**policy_kwargs, "features_extractor_class": FEATURES_EXTRACTORS[name]}


def run_sb3(config: RunConfig, hp: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Train, evaluate periodically, save ``model.zip``, and summarise.

    :param config: the run
    :param hp: resolved hyperparameters
    :param run_dir: the (temporary) run folder
    :return: summary scalars: final evaluation return (mean, std), fraction of V* where a transition model exists, fps
    """
    train_env, eval_env = make_envs(config, hp, run_dir)
    resume_from = resume_point(config)
    initial: dict[str, float] = {}
    if resume_from is None:
        model = build_model(config, hp, train_env, tensorboard_log=str(run_dir / "tb"))
        if config.init == "adversarial":
            initial = _adversarial_start(model, config, train_env)
    else:
        algo_class = SB3_ALGOS[config.algo].load_class()
        model, train_env = resume_from.restore(algo_class, train_env, config.device, str(run_dir / "tb"))
    first_step = model.num_timesteps
    n_envs = train_env.num_envs
    deterministic = eval_deterministic(config.env, hp)
    callback = None
    if config.eval_freq > 0:
        callback = EvalCallback(
            eval_env,
            n_eval_episodes=config.eval_episodes,
            eval_freq=max(config.eval_freq // n_envs, 1),
            log_path=str(run_dir),
            deterministic=deterministic,
            verbose=0,
        )
    if resume_from is not None:
        resume_from.restore_evaluations(callback)
    checkpointer = checkpoint_callback(config, n_envs, run_dir)
    start = time.perf_counter()
    interrupted = False
    try:
        model.learn(
            total_timesteps=int(hp["n_timesteps"]) - first_step,
            callback=[c for c in (callback, checkpointer) if c is not None],
            progress_bar=config.progress or sys.stderr.isatty(),
            tb_log_name="tb",
            reset_num_timesteps=resume_from is None,
        )
    except KeyboardInterrupt:
        interrupted = True
        if checkpointer is not None:
            checkpointer.save()
    wall = time.perf_counter() - start
    model.save(run_dir / MODEL_FILE)
    if isinstance(train_env, VecNormalize):
        train_env.save(str(run_dir / NORMALIZE_FILE))
        eval_env.obs_rms = train_env.obs_rms
    summary: dict[str, Any] = {
        "timesteps": int(model.num_timesteps),
        "wall_time": wall,
        "fps": (model.num_timesteps - first_step) / max(wall, 1e-9),
        **initial,
    }
    rows = _eval_rows(run_dir)
    if interrupted:
        summary["interrupted"] = True
    else:
        mean, std = evaluate_policy(model, eval_env, n_eval_episodes=config.eval_episodes, deterministic=deterministic)
        summary.update(final_return=float(mean), final_return_std=float(std))
        rows.append((model.num_timesteps, "final_return", float(mean)))
        report = greedy_report(model, config.env, config.env_kwargs, eval_env)
        summary.update(report)
        rows.extend((model.num_timesteps, key, float(value)) for key, value in report.items() if np.isscalar(value))
    rows += [(model.num_timesteps, "wall_time", wall), (model.num_timesteps, "fps", summary["fps"])]
    write_metrics(run_dir, rows)
    train_env.close()
    eval_env.close()
    if not interrupted:
        discard(config)
    return summary


def _adversarial_start(model: BaseAlgorithm, config: RunConfig, train_env: VecEnv) -> dict[str, float]:
    """Fit the untrained actor to the adversarial start of the run's env (``agents.initial_policy``).

    :param model: the untrained model
    :param config: the run (env, env kwargs, pi0)
    :param train_env: its training env (for observation normalisation)
    :return: the fit's summary: ``initial_pi_star_median/min/max``, ``initial_fit_steps``, ``initial_fit_time``, ..."""
    from agents.initial_policy import adversarial_start

    env = gym.make(config.env, **config.env_kwargs)
    try:
        return adversarial_start(model, env, config.start_pi0, train_env).summary()
    except ValueError as err:
        raise UsageError(f"--init adversarial on {config.env}: {err}") from None
    finally:
        env.close()


def _eval_rows(run_dir: Path) -> list[tuple[int, str, float]]:
    path = run_dir / "evaluations.npz"
    if not path.exists():
        return []
    data = np.load(path)
    return [(int(t), "eval_return", float(np.mean(r))) for t, r in zip(data["timesteps"], data["results"])]
