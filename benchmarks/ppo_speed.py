"""Training steps per second of PPO with the escort policy against softmax, on FourRooms-v0 (MLP) and Atari (CNN).

Run from the repository root::

    python benchmarks/ppo_speed.py [--repeats 5] [--atari-repeats 4] [--fourrooms-iterations 2] [--atari-iterations 1]

Both models are built as ``train.py`` builds them (``experiments.sb3_run.make_envs`` and ``build_model``, the
hyperparameters of ``hyperparams/ppo.yml``: FourRooms-v0 8 envs x 128 steps, Atari 8 envs x 128 steps with
``AtariWrapper`` and 4 stacked frames), run one untimed PPO iteration, then alternate timed ``learn`` calls of the
same length, the order swapped each repetition. Torch uses one thread. The table gives the median rate over
repetitions (wall clock and CPU time) and the median, minimum and maximum over repetitions of escort's rate over
softmax's in the same repetition. Atari steps are agent steps; each is 4 emulator frames. ``--unfloored`` adds a third
model, escort over the logits ``p * log(|theta| + 1e-6)`` (their definition before the relative floor of
``policies.escort_logits``; the same probabilities wherever no magnitude is a tiny fraction of its row's largest):
beside the floored one, it shows what the floor costs. The command, commit, date and machine load come first
(``benchmarks.provenance``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv
from torch.distributions import Categorical

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for a checkout not pip-installed

from benchmarks.env_speed import Timing, interleave, print_results, timed  # noqa: E402
from benchmarks.provenance import header  # noqa: E402
from envs.make import env_family  # noqa: E402
from experiments.config import RunConfig  # noqa: E402
from experiments.hyperparams import load_hyperparams  # noqa: E402
from experiments.sb3_run import build_model, make_envs  # noqa: E402
from policies import EscortDistribution  # noqa: E402

POLICIES = ("softmax", "escort")
UNFLOORED = "escort, unfloored logits"
#: The additive guard of the unfloored logits ``p * log(|theta| + UNFLOORED_EPS)``.
UNFLOORED_EPS = 1e-6


class UnflooredEscortDistribution(EscortDistribution):
    """Escort over the logits ``p * log(|theta| + 1e-6)``: no relative floor, fewer kernels; for timing only."""

    def proba_distribution(self, action_logits: torch.Tensor) -> UnflooredEscortDistribution:
        """
        :param action_logits: ``theta``, the output of the action net
        :return: self
        """
        self.theta = action_logits
        self.distribution = Categorical(logits=torch.xlogy(self.p, torch.abs(action_logits) + UNFLOORED_EPS))
        return self


def unfloored_model(env_id: str) -> BaseAlgorithm:
    """:param env_id: the env
    :return: the escort model of ``ppo_model``, its distribution replaced by ``UnflooredEscortDistribution``"""
    model = ppo_model(env_id, "escort")
    dist = model.policy.action_dist
    model.policy.action_dist = UnflooredEscortDistribution(dist.action_dim, p=dist.p, eps=dist.eps)
    return model


def add_fourrooms_arguments(parser: argparse.ArgumentParser, steps: int) -> None:
    """Add the options of the FourRooms PPO benchmarks: ``--n-envs``, ``--steps``, ``--policy``, ``--hyperparams``.

    :param parser: the script's parser
    :param steps: the default of ``--steps``
    """
    parser.add_argument("--n-envs", type=int, nargs="+", default=[8, 64], help="numbers of parallel envs")
    parser.add_argument("--steps", type=int, default=steps, help="env steps per timing (rounded up to whole iterations)")
    parser.add_argument("--policy", default="escort", help="softmax or escort")
    parser.add_argument(
        "--hyperparams", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of hyperparams/ppo.yml, as train.py"
    )


def ppo_model(
    env_id: str,
    policy: str,
    n_envs: int | None = None,
    batched: bool = True,
    wrap_env: Callable[[VecEnv], VecEnv] | None = None,
    **hyperparams: object,
) -> BaseAlgorithm:
    """
    A PPO model as ``train.py --env env_id --policy policy`` builds it.

    :param env_id: the env
    :param policy: ``softmax`` or ``escort``
    :param n_envs: parallel envs (default: the hyperparameter file's)
    :param batched: False: FourRooms copies in SB3's ``DummyVecEnv`` (``--no-batched-env``)
    :param wrap_env: a wrapper for the training env (None: none)
    :param hyperparams: overrides of the hyperparameter file
    :return: the untrained model (seed 0, CPU)
    """
    config = RunConfig(algo="ppo", env=env_id, policy=policy, n_envs=n_envs, no_batched_env=not batched, verbose=0)
    overrides = {**hyperparams, **({"n_envs": n_envs} if n_envs is not None else {})}
    hp = load_hyperparams("ppo", env_id, env_family(env_id), overrides)
    train_env, eval_env = make_envs(config, hp, None)
    eval_env.close()
    return build_model(config, hp, wrap_env(train_env) if wrap_env is not None else train_env)


def iteration_steps(model: BaseAlgorithm) -> int:
    """:param model: an on-policy model
    :return: env steps per PPO iteration (``n_steps * n_envs``)"""
    return model.n_steps * model.n_envs


def timed_learn(model: BaseAlgorithm, iterations: int) -> Timing:
    """:param model: the model
    :param iterations: PPO iterations to run
    :return: (env steps, wall seconds, CPU seconds)"""

    def work() -> int:
        before = model.num_timesteps
        model.learn(iterations * iteration_steps(model), reset_num_timesteps=False)
        return model.num_timesteps - before

    return timed(work)


def compare(models: dict[str, BaseAlgorithm], iterations: int, repeats: int) -> list[dict[str, Timing]]:
    """
    :param models: name -> model; each runs one untimed iteration first
    :param iterations: PPO iterations per timing
    :param repeats: interleaved repetitions
    :return: what ``benchmarks.env_speed.interleave`` returns
    """
    for model in models.values():
        timed_learn(model, 1)
    return interleave({name: (lambda m=model: timed_learn(m, iterations)) for name, model in models.items()}, repeats)


def rate_rows(label: str, results: list[dict[str, Timing]], baseline: str, other: str) -> list[str]:
    """:param label: the setting's name
    :param results: timings per repetition
    :param baseline: the denominator's name
    :param other: the numerator's name
    :return: Markdown rows: one per variant, then the ratio"""
    rows = []
    for name in (baseline, other):
        wall = statistics.median(steps / w for steps, w, _ in (r[name] for r in results))
        cpu = statistics.median(steps / c for steps, _, c in (r[name] for r in results))
        rows.append(f"| {label} | {name} | {wall:,.0f} | {cpu:,.0f} | |")
    ratios = [(r[other][0] / r[other][1]) / (r[baseline][0] / r[baseline][1]) for r in results]
    cpu_ratios = [(r[other][0] / r[other][2]) / (r[baseline][0] / r[baseline][2]) for r in results]
    rows.append(
        f"| {label} | **{other} / {baseline}** | **{statistics.median(ratios):.3f}** (min {min(ratios):.3f}, "
        f"max {max(ratios):.3f}) | {statistics.median(cpu_ratios):.3f} | {len(ratios)} |"
    )
    return rows


HEADER = ["| setting | variant | steps/s (wall) | steps/CPU-s | repetitions |", "|---|---|---:|---:|---:|"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions on FourRooms")
    parser.add_argument("--atari-repeats", type=int, default=4, help="interleaved repetitions on Atari")
    parser.add_argument("--fourrooms-iterations", type=int, default=2, help="PPO iterations per FourRooms timing")
    parser.add_argument("--atari-iterations", type=int, default=1, help="PPO iterations per Atari timing")
    parser.add_argument("--atari", default="ALE/Pong-v5", help="Atari id")
    parser.add_argument("--unfloored", action="store_true", help="also time escort without the logits' relative floor")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(header())
    rows = list(HEADER)
    settings = (
        ("FourRooms-v0", "MLP", args.fourrooms_iterations, args.repeats),
        (args.atari, "CNN", args.atari_iterations, args.atari_repeats),
    )
    for env_id, kind, iterations, repeats in settings:
        models = {policy: ppo_model(env_id, policy) for policy in POLICIES}
        if args.unfloored:
            models[UNFLOORED] = unfloored_model(env_id)
        steps = iterations * iteration_steps(models["softmax"])
        results = compare(models, iterations, repeats)
        label = f"{env_id} ({kind}), {steps} steps per timing"
        rows += rate_rows(label, results, "softmax", "escort")
        if args.unfloored:
            rows += rate_rows(label, results, "softmax", UNFLOORED)[1:] + rate_rows(label, results, UNFLOORED, "escort")[2:]
        for model in models.values():
            model.env.close()
    print_results(rows)


if __name__ == "__main__":
    main()
