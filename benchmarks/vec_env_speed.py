"""PPO training steps per second on FourRooms-v0: the batched env against SB3's DummyVecEnv of single envs.

Run from the repository root::

    python benchmarks/vec_env_speed.py [--repeats 4] [--n-envs 8 64] [--steps 4096] [--policy escort] [--hyperparams k=v ...]

For each ``n_envs``, two PPO models built as ``train.py`` builds them (``hyperparams/ppo.yml``, FourRooms-v0 block,
``n_envs`` overridden), one on ``envs.four_rooms_vec.FourRoomsVecEnv`` (the default) and one on a ``DummyVecEnv`` of
``Monitor(gym.make("FourRooms-v0"))`` copies (``--no-batched-env``), run one untimed iteration, then alternate timed
``learn`` calls of about ``--steps`` env steps, the order swapped each repetition. Torch uses one thread. The table gives
median rates and the median (minimum, maximum) over repetitions of the batched rate over the DummyVecEnv rate.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for a checkout not pip-installed

from benchmarks.env_speed import print_results  # noqa: E402
from benchmarks.ppo_speed import HEADER, add_fourrooms_arguments, compare, iteration_steps, ppo_model, rate_rows  # noqa: E402
from benchmarks.provenance import header  # noqa: E402
from experiments.config import parse_key_values  # noqa: E402

BATCHED, DUMMY = "batched FourRoomsVecEnv", "DummyVecEnv of single envs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4, help="interleaved repetitions per n_envs")
    add_fourrooms_arguments(parser, steps=4096)
    args = parser.parse_args()
    hyperparams = parse_key_values(args.hyperparams, "--hyperparams")
    torch.set_num_threads(1)
    print(header())
    rows = list(HEADER)
    for n_envs in args.n_envs:
        models = {
            name: ppo_model("FourRooms-v0", args.policy, n_envs, batched=name == BATCHED, **hyperparams)
            for name in (BATCHED, DUMMY)
        }
        iterations = -(-args.steps // iteration_steps(models[BATCHED]))
        results = compare(models, iterations, args.repeats)
        label = f"FourRooms-v0, {args.policy}, n_envs={n_envs}, {iterations * iteration_steps(models[BATCHED])} steps"
        label += f", {' '.join(args.hyperparams)}" if args.hyperparams else ""
        rows += rate_rows(label, results, DUMMY, BATCHED)
    print_results(rows)


if __name__ == "__main__":
    main()
