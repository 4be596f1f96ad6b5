"""One run of an SB3 on-policy algorithm (PPO, A2C, QAC) with a softmax, escort or NeuRD policy."""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack, VecNormalize, VecTransposeImage

from envs.make import FAMILY_SETUPS, ensure_registered, env_family, make_vec_env
from envs.seeding import EVAL_STREAM, TRAIN_STREAM, SeedSequenceDummyVecEnv, check_seed
from experiments.checkpoints import checkpoint_callback, discard, resume_point
from experiments.config import RunConfig
from experiments.errors import UsageError
from experiments.hyperparams import schedule
from experiments.optimizers import OPTIMIZER_KEYS, optimizer_policy_kwargs
from experiments.reference import eval_greedy
from experiments.results import write_metrics
from experiments.tabular_eval import greedy_report
from experiments.zoo import REFUSED_KEYS, make_wrapper, normalize_kwargs, policy_choice, policy_kwargs_objects, wrapper_specs

#: Hyperparameter keys the runner consumes; every other key goes to the algorithm's constructor.
RUNNER_KEYS: tuple[str, ...] = (
    "n_timesteps",
    "n_envs",
    "policy",
    "policy_kwargs",
    "normalize",
    "frame_stack",
    "env_wrapper",
    "eval_deterministic",
)
RUNNER_KEYS += OPTIMIZER_KEYS  # optimizer and optimizer_kwargs become policy_kwargs (experiments.optimizers)
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf")
#: Hyperparameters that count something: whole numbers >= 1 (SB3 divides by some of them before checking).
COUNT_KEYS = ("n_envs", "n_steps", "batch_size", "n_epochs")
#: Constructor arguments that the runner sets itself, never from a hyperparameter file.
RUNNER_ARGUMENTS = (
    "self",
    "policy",
    "env",
    "policy_kwargs",
    "seed",
    "device",
    "tensorboard_log",
    "verbose",
    "_init_setup_model",
)
SB3_ALIASES = {"mlp": "MlpPolicy", "cnn": "CnnPolicy", "multi": "MultiInputPolicy"}
MODEL_FILE = "model.zip"
#: The model at its best periodic evaluation (SB3's ``EvalCallback``, as rl-zoo3 keeps it).
BEST_MODEL_FILE = "best_model.zip"
EVALUATIONS_FILE = "evaluations.npz"
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
    """The training env (Monitor CSV in ``run_dir``) and the evaluation env (``--n-eval-envs`` copies made with
    ``--eval-env-kwargs``, default the training kwargs) with evaluation preprocessing.

    Both derive their env seeds from the run's seed (``envs.seeding.env_seeds``), the evaluation env from its own
    stream (``EVAL_STREAM``): no env seed is shared between the two, nor with another run's envs.

    :param config: the run
    :param hp: resolved hyperparameters (``n_envs``, ``normalize``, ``frame_stack``, ``env_wrapper``)
    :param run_dir: the run folder, or None for no monitor files
    :return: (train_env, eval_env)
    """
    if config.seed < 0:
        raise UsageError(f"--seed must be >= 0 (got {config.seed}): the env seeds are derived from it by SeedSequence")
    monitor_dir = str(run_dir) if run_dir is not None else None
    batched = not config.no_batched_env
    train_env = run_vec_env(
        config.env, int(hp.get("n_envs", 1)), config.seed, hp, env_kwargs=config.env_kwargs, batched=batched,
        monitor_dir=monitor_dir,
    )  # fmt: skip
    eval_env = run_vec_env(
        config.env, config.n_eval_envs, config.seed, hp, env_kwargs=config.evaluation_env_kwargs, batched=batched,
        training=False, seed_stream=EVAL_STREAM,
    )  # fmt: skip
    normalize = normalize_kwargs(hp.get("normalize"))
    if normalize is not None:
        train_env = VecNormalize(train_env, **{"gamma": float(hp.get("gamma", 0.99)), **normalize})
        eval_env = VecNormalize(eval_env, **{**normalize, "training": False, "norm_reward": False})
    if is_image_space(eval_env.observation_space) and not is_image_space_channels_first(eval_env.observation_space):
        # SB3 adds VecTransposeImage outside the env it is given, when that env's (VecNormalize's, if normalising)
        # observations are channel-last images; the eval env is checked and wrapped the same way, since EvalCallback
        # copies the normalisation statistics wrapper by wrapper
        eval_env = VecTransposeImage(eval_env)
    return train_env, eval_env


def run_vec_env(
    env_id: str,
    n_envs: int,
    seed: int,
    hp: dict[str, Any],
    *,
    env_kwargs: dict[str, Any],
    batched: bool = True,
    training: bool = True,
    seed_stream: int = TRAIN_STREAM,
    monitor_dir: str | None = None,
) -> VecEnv:
    """``envs.make.make_vec_env`` with a run's ``frame_stack`` and rl-zoo3's ``env_wrapper``.

    An ``env_wrapper`` replaces the family's wrapper (Atari: ``AtariWrapper``; MiniGrid: ``ImgObsWrapper``), as in
    rl-zoo3, whose files name every wrapper (its ``atari`` block lists ``AtariWrapper``); the copies then step one by
    one in ``DummyVecEnv``, each under its ``Monitor``, and ``frame_stack`` stacks only when the file sets it.

    :param env_id: the env id
    :param n_envs: copies
    :param seed: the run's seed
    :param hp: resolved hyperparameters
    :param env_kwargs: keyword arguments of ``gym.make``
    :param batched: step FourRooms-v0's copies together (ignored with ``env_wrapper``)
    :param training: training or evaluation preprocessing
    :param seed_stream: ``TRAIN_STREAM`` or ``EVAL_STREAM``
    :param monitor_dir: folder of the Monitor files (None: none)
    :return: the vectorised env
    """
    if not hp.get("env_wrapper"):
        return make_vec_env(
            env_id, n_envs, seed, env_kwargs=env_kwargs, monitor_dir=monitor_dir, training=training,
            frame_stack=hp.get("frame_stack"), batched=batched, seed_stream=seed_stream,
        )  # fmt: skip
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env

    check_seed(seed)
    ensure_registered(env_id)
    kwargs = FAMILY_SETUPS[env_family(env_id)](env_kwargs, training)[0]
    wrapper = make_wrapper(wrapper_specs(hp["env_wrapper"]))
    vec_env = sb3_make_vec_env(
        env_id, n_envs=n_envs, seed=None, monitor_dir=monitor_dir, wrapper_class=wrapper, env_kwargs=kwargs,
        vec_env_cls=SeedSequenceDummyVecEnv, vec_env_kwargs={"stream": seed_stream},
    )  # fmt: skip
    vec_env.seed(seed)
    stack = int(hp.get("frame_stack") or 0)
    return VecFrameStack(vec_env, stack) if stack > 1 else vec_env


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
    algo_class = algo.load_class()
    check_keys(config.algo, algo_class, hp)
    policy, extra = algo.policy_for(config.policy, config.p, policy_kind(config, hp, env.observation_space))
    kwargs = {k: schedule(v) if k in SCHEDULE_KEYS else v for k, v in hp.items() if k not in RUNNER_KEYS}
    policy_kwargs = {**policy_kwargs_objects(named_extractor(hp.get("policy_kwargs") or {})), **extra}
    policy_kwargs.update(optimizer_policy_kwargs(hp, policy_kwargs))
    try:
        return algo_class(
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
            f"hyperparameters do not fit {config.algo}: {err}; fix --hyperparams or {hp_source(config)}"
        ) from None


def hp_source(config: RunConfig) -> str:
    """:param config: the run
    :return: where its hyperparameters come from: the ``--conf-file``, or ``hyperparams/<algo>.yml``"""
    return config.conf_file or f"hyperparams/{config.algo}.yml"


def check_keys(algo: str, algo_class: type[BaseAlgorithm], hp: dict[str, Any]) -> None:
    """Every key is one the runner consumes (``RUNNER_KEYS``) or an argument of the algorithm; rl-zoo3's keys that
    this runner does not take (``experiments.zoo.REFUSED_KEYS``) say what to do instead.

    :param algo: the algorithm's name
    :param algo_class: its class
    :param hp: resolved hyperparameters
    """
    refused = [key for key in hp if key in REFUSED_KEYS]
    if refused:
        raise UsageError(REFUSED_KEYS[refused[0]])
    arguments = [name for name in inspect.signature(algo_class.__init__).parameters if name not in RUNNER_ARGUMENTS]
    unknown = sorted(set(hp) - set(RUNNER_KEYS) - set(arguments))
    if unknown:
        raise UsageError(
            f"hyperparameters do not fit {algo}: unknown key '{unknown[0]}'; known: {', '.join([*RUNNER_KEYS, *arguments])}"
        )


def policy_kind(config: RunConfig, hp: dict[str, Any], space: gym.Space) -> str:
    """:param config: the run (``--policy``)
    :param hp: resolved hyperparameters (rl-zoo3's ``policy:``, where given, chooses the network kind)
    :param space: the training env's observation space (otherwise the kind follows it)
    :return: ``mlp``, ``cnn`` or ``multi``"""
    if "policy" in hp:
        return policy_choice(hp["policy"], config.policy)
    return observation_kind(space)


def policy_name(config: RunConfig, kind: str) -> str:
    """:param config: the run
    :param kind: the network kind
    :return: the policy class the run builds, as ``policy:`` names it (``MlpPolicy``, ``policies.EscortActorCriticPolicy``)"""
    policy = SB3_ALGOS[config.algo].policy_for(config.policy, config.p, kind)[0]
    return policy if isinstance(policy, str) else f"policies.{policy.__name__}"


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
            best_model_save_path=str(run_dir),
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
    if interrupted:
        summary["interrupted"] = True
        rows = _eval_rows(run_dir)
    else:
        returns, lengths = evaluate_policy(
            model, eval_env, n_eval_episodes=config.eval_episodes, deterministic=deterministic, return_episode_rewards=True
        )
        mean, std = float(np.mean(returns)), float(np.std(returns))
        add_evaluation(run_dir / EVALUATIONS_FILE, int(model.num_timesteps), returns, lengths)
        rows = _eval_rows(run_dir)
        summary.update(final_return=mean, final_return_std=std)
        rows.append((model.num_timesteps, "final_return", mean))
        report = greedy_report(model, config.env, config.evaluation_env_kwargs, eval_env)
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


def add_evaluation(path: Path, timesteps: int, returns: Sequence[float], lengths: Sequence[int]) -> None:
    """Append the final evaluation to ``evaluations.npz`` (EvalCallback's layout: ``timesteps``, ``results``,
    ``ep_lengths``), which is so written even when no periodic evaluation ran; an evaluation at the step of the last
    periodic one is not added again.

    :param path: the file (need not exist)
    :param timesteps: the step of the evaluation
    :param returns: its episodes' returns
    :param lengths: their lengths
    """
    empty = {"timesteps": np.zeros(0, int), "results": np.zeros((0, len(returns))), "ep_lengths": np.zeros((0, len(lengths)))}
    data = dict(np.load(path)) if path.exists() else empty
    fits = set(data) == set(empty) and data["results"].shape[1:] == (len(returns),)
    if not fits or (len(data["timesteps"]) and data["timesteps"][-1] >= timesteps):
        return
    np.savez(
        path,
        timesteps=np.append(data["timesteps"], timesteps).astype(int),
        results=np.vstack([data["results"], np.asarray(returns, dtype=float)[None]]),
        ep_lengths=np.vstack([data["ep_lengths"], np.asarray(lengths, dtype=int)[None]]).astype(int),
    )


def _eval_rows(run_dir: Path) -> list[tuple[int, str, float]]:
    path = run_dir / EVALUATIONS_FILE

    if not path.exists():
        return []
    data = np.load(path)
    return [(int(t), "eval_return", float(np.mean(r))) for t, r in zip(data["timesteps"], data["results"])]
