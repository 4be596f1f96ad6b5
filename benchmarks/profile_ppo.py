"""Where the time of a PPO iteration on FourRooms-v0 goes: env, policy forward, buffer, update, the rest.

Run from the repository root::

    python benchmarks/profile_ppo.py [--n-envs 8 64] [--steps 8192] [--policy escort] [--hyperparams k=v ...]

PPO is built as ``train.py`` builds it (``hyperparams/ppo.yml``, FourRooms-v0 block, ``n_envs`` overridden), once on
the batched env and once on SB3's ``DummyVecEnv`` of single envs, and timed through SB3's own extension points, with
nothing patched: a ``VecEnvWrapper`` around the training env (``env.step``), torch forward hooks on the policy (the
forward pass of the rollout; the update calls ``evaluate_actions`` instead), a ``RolloutBuffer`` subclass
(``add``, and ``compute_returns_and_advantage``: GAE), and a callback that marks the rollout's start and end.
``update`` is the rest of the iteration (``PPO.train()`` and its logging); ``other rollout`` is the rollout's own
bookkeeping (tensor conversion, episode statistics, value bootstrap on truncation, the loop). After one untimed
iteration, about ``--steps`` env steps are timed. Torch uses one thread, so the main thread's CPU time is the work
done, whatever else runs on the machine; shares are of that CPU time.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for a checkout not pip-installed

from benchmarks.env_speed import print_results  # noqa: E402
from benchmarks.ppo_speed import add_fourrooms_arguments, iteration_steps, ppo_model  # noqa: E402
from benchmarks.provenance import header  # noqa: E402
from experiments.config import parse_key_values  # noqa: E402

SECTIONS = ("env.step", "policy forward", "buffer add", "GAE", "other rollout", "update")


class Stopwatch:
    """CPU seconds of the calling thread spent per named section (``time.thread_time``: other processes on the
    machine do not count, so the shares hold on a loaded machine).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.clock = time.thread_time

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        """:param name: the section to charge"""
        start = self.clock()
        try:
            yield
        finally:
            self.seconds[name] += self.clock() - start

    def clear(self) -> None:
        """Forget every timing so far."""
        self.seconds.clear()


class TimedVecEnv(VecEnvWrapper):
    """Charges ``step_async`` and ``step_wait`` of the wrapped env to ``env.step``.

    :param venv: the env
    :param watch: the stopwatch
    """

    def __init__(self, venv: VecEnv, watch: Stopwatch) -> None:
        super().__init__(venv)
        self.watch = watch

    def reset(self) -> VecEnvObs:
        return self.venv.reset()

    def step_async(self, actions: Any) -> None:
        with self.watch.section("env.step"):
            self.venv.step_async(actions)

    def step_wait(self) -> VecEnvStepReturn:
        with self.watch.section("env.step"):
            return self.venv.step_wait()


class TimedRolloutBuffer(RolloutBuffer):
    """A ``RolloutBuffer`` that charges ``add`` and ``compute_returns_and_advantage`` to the stopwatch.

    :param args: ``RolloutBuffer`` arguments
    :param watch: the stopwatch
    :param kwargs: ``RolloutBuffer`` keyword arguments
    """

    def __init__(self, *args: Any, watch: Stopwatch, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watch = watch

    def add(self, *args: Any, **kwargs: Any) -> None:
        with self.watch.section("buffer add"):
            super().add(*args, **kwargs)

    def compute_returns_and_advantage(self, *args: Any, **kwargs: Any) -> None:
        with self.watch.section("GAE"):
            super().compute_returns_and_advantage(*args, **kwargs)


class RolloutTimer(BaseCallback):
    """Charges the time from the start to the end of each rollout to ``rollout``.

    :param watch: the stopwatch
    """

    def __init__(self, watch: Stopwatch) -> None:
        super().__init__()
        self.watch = watch
        self._start = 0.0

    def _on_rollout_start(self) -> None:
        self._start = self.watch.clock()

    def _on_rollout_end(self) -> None:
        self.watch.seconds["rollout"] += self.watch.clock() - self._start

    def _on_step(self) -> bool:
        return True


def time_forward(policy: torch.nn.Module, watch: Stopwatch) -> None:
    """Charge every ``policy(obs)`` call to ``policy forward``, through torch's forward hooks.

    :param policy: the policy module
    :param watch: the stopwatch
    """
    start = [0.0]

    def before(*_: Any) -> None:
        start[0] = watch.clock()

    def after(*_: Any) -> None:
        watch.seconds["policy forward"] += watch.clock() - start[0]

    policy.register_forward_pre_hook(before)
    policy.register_forward_hook(after)


def profile(
    n_envs: int, batched: bool, policy: str, steps: int, hyperparams: dict[str, Any]
) -> tuple[dict[str, float], int, int]:
    """
    :param n_envs: parallel envs
    :param batched: the batched env (True) or SB3's ``DummyVecEnv`` of single envs
    :param policy: softmax or escort
    :param steps: env steps to time (rounded up to whole iterations)
    :param hyperparams: overrides of ``hyperparams/ppo.yml``
    :return: CPU seconds per section (``SECTIONS``, plus ``iteration``: the whole; ``wall``: its wall-clock
        seconds), env steps and iterations timed
    """
    watch = Stopwatch()
    model: BaseAlgorithm = ppo_model(
        "FourRooms-v0",
        policy,
        n_envs,
        batched=batched,
        wrap_env=lambda env: TimedVecEnv(env, watch),
        rollout_buffer_class=TimedRolloutBuffer,
        rollout_buffer_kwargs={"watch": watch},
        **hyperparams,
    )
    time_forward(model.policy, watch)
    callback = RolloutTimer(watch)
    model.learn(iteration_steps(model), callback=callback)
    watch.clear()
    iterations = -(-steps // iteration_steps(model))
    wall, cpu = time.perf_counter(), watch.clock()
    model.learn(iterations * iteration_steps(model), callback=callback, reset_num_timesteps=False)
    seconds = dict(watch.seconds)
    seconds["iteration"], seconds["wall"] = watch.clock() - cpu, time.perf_counter() - wall
    measured = sum(seconds[name] for name in SECTIONS[:4])
    seconds["other rollout"] = seconds["rollout"] - measured
    seconds["update"] = seconds["iteration"] - seconds["rollout"]
    return seconds, iterations * iteration_steps(model), iterations


def row(label: str, seconds: dict[str, float], steps: int, iterations: int) -> str:
    """:param label: the configuration
    :param seconds: what ``profile`` returned
    :param steps: env steps timed
    :param iterations: PPO iterations timed
    :return: a Markdown row: CPU and wall ms per iteration, steps per CPU-second, then each section's share"""
    shares = " | ".join(f"{100 * seconds[name] / seconds['iteration']:.1f}%" for name in SECTIONS)
    per_iteration = f"{1000 * seconds['iteration'] / iterations:,.0f} | {1000 * seconds['wall'] / iterations:,.0f}"
    return f"| {label} | {per_iteration} | {steps / seconds['iteration']:,.0f} | {shares} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_fourrooms_arguments(parser, steps=8192)
    args = parser.parse_args()
    hyperparams = parse_key_values(args.hyperparams, "--hyperparams")
    torch.set_num_threads(1)
    print(header())
    lines = [
        "| env, n_envs | CPU ms per iteration | wall ms | steps/CPU-s | " + " | ".join(SECTIONS) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(SECTIONS),
    ]
    for n_envs in args.n_envs:
        for batched, name in ((True, "batched FourRoomsVecEnv"), (False, "DummyVecEnv of single envs")):
            seconds, steps, iterations = profile(n_envs, batched, args.policy, args.steps, hyperparams)
            lines.append(row(f"{name}, {n_envs}", seconds, steps, iterations))
    overrides = f" with {' '.join(args.hyperparams)}" if args.hyperparams else ""
    print_results(lines, f"PPO ({args.policy}) on FourRooms-v0{overrides}, share of the iteration's CPU time:")


if __name__ == "__main__":
    main()
