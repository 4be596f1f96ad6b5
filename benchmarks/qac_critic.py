"""How well QAC's critic learns Q^pi of a fixed policy on FourRooms-v0, measured against the exact Q^pi.

The policy takes the optimal action with probability 0.8 + 0.2/4 and each other action with 0.2/4 (80% optimal,
20% uniform). QAC's softmax actor is fitted to it (cross-entropy on every state's observation), then frozen
(``actor_update="none"``) while QAC trains its critic on the policy's own rollouts. The truth is ``Q^pi`` of the
network's actual policy, from ``transition_model()`` and ``policy_evaluation``. Reported over the state-action pairs
the policy visited during training: mean absolute error, as a fraction of the range of ``Q^pi`` over those pairs (the
bar: at most 10%), and the same error weighted by visit counts.

    python benchmarks/qac_critic.py [--seeds 3] [-n 100000] [--subgoals-off]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

import envs
from agents import QAC
from envs.make import env_family, make_vec_env
from experiments.hyperparams import load_hyperparams, schedule

ENV_ID = "FourRooms-v0"
OPTIMAL_SHARE = 0.8
BAR = 0.10
RUNNER_KEYS = ("n_timesteps", "n_envs", "policy", "policy_kwargs", "normalize", "frame_stack", "eval_deterministic")


class VisitCounter(BaseCallback):
    """Counts the (state, action) pairs of every rollout, mapping observations to the model's state indices.

    :param observations: ``(S, obs_dim)`` observation of every state
    """

    def __init__(self, observations: np.ndarray):
        super().__init__()
        self.index = {row.tobytes(): state for state, row in enumerate(observations)}
        self.counts = np.zeros((len(observations), 4), dtype=np.int64)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        obs = buffer.observations.reshape(-1, buffer.observations.shape[-1])
        states = np.array([self.index[row.tobytes()] for row in obs])
        np.add.at(self.counts, (states, buffer.actions.reshape(-1).astype(np.int64)), 1)


def target_policy(mdp: envs.TabularMDP) -> np.ndarray:
    """:return: ``(S, A)``: 80% the optimal action (greedy in Q*), 20% uniform"""
    optimal = np.eye(mdp.n_actions)[envs.value_iteration(mdp)[1].argmax(axis=1)]
    return OPTIMAL_SHARE * optimal + (1.0 - OPTIMAL_SHARE) / mdp.n_actions


def fit_actor(model: QAC, observations: np.ndarray, target: np.ndarray, steps: int = 1500) -> np.ndarray:
    """Fit the actor to ``target`` by cross-entropy over every state (full batch, Adam).

    :return: the network's policy afterwards, ``(S, A)``
    """
    policy = model.policy
    params = list(policy.mlp_extractor.policy_net.parameters()) + list(policy.action_net.parameters())
    optimizer = th.optim.Adam(params, lr=1e-2)
    obs, goal = th.as_tensor(observations), th.as_tensor(target, dtype=th.float32)
    for _ in range(steps):
        log_pi = policy.get_distribution(obs).distribution.logits
        loss = -(goal * log_pi).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return network_policy(model, observations)


def network_policy(model: QAC, observations: np.ndarray) -> np.ndarray:
    """:return: ``(S, A)`` action probabilities of the model on every state (float64, rows summing to 1)"""
    with th.no_grad():
        probs = model.policy.get_distribution(th.as_tensor(observations)).distribution.probs.double().numpy()
    return probs / probs.sum(axis=1, keepdims=True)


def critic_errors(model: QAC, observations: np.ndarray, q_true: np.ndarray, counts: np.ndarray) -> dict[str, float]:
    """:return: mean absolute error of the learned Q over visited pairs, its ratio to Q^pi's range, weighted MAE"""
    with th.no_grad():
        q_learned = model.policy.q_values(th.as_tensor(observations)).double().numpy()
    visited = counts > 0
    error = np.abs(q_learned - q_true)[visited]
    value_range = float(np.ptp(q_true[visited]))
    mae = float(error.mean())
    weighted = float((error * counts[visited]).sum() / counts[visited].sum())
    return {
        "pairs": int(visited.sum()),
        "mae": mae,
        "range": value_range,
        "ratio": mae / value_range,
        "weighted_mae": weighted,
    }


def run(seed: int, n_timesteps: int, env_kwargs: dict[str, Any], checkpoints: int) -> list[dict[str, float]]:
    """Fit, freeze, train the critic; measure the critic at ``checkpoints`` evenly spaced points.

    :return: one dict of errors per checkpoint (with ``steps`` and the fitted policy's distance to the target)
    """
    hp = load_hyperparams("qac", ENV_ID, env_family(ENV_ID), {"actor_update": "none", "ent_coef": 0.0})
    kwargs = {key: schedule(value) if key == "learning_rate" else value for key, value in hp.items() if key not in RUNNER_KEYS}
    base = envs.FourRoomsEnv(**env_kwargs)
    mdp, observations = base.transition_model(), base.observations()
    env = make_vec_env(ENV_ID, int(hp["n_envs"]), seed, env_kwargs=env_kwargs)
    policy_kwargs = {**(hp.get("policy_kwargs") or {}), "parameterization": "softmax"}
    model = QAC("MlpPolicy", env, policy_kwargs=policy_kwargs, seed=seed, device="cpu", **kwargs)
    target = target_policy(mdp)
    pi = fit_actor(model, observations, target)
    q_true = envs.policy_evaluation(mdp, pi)[1]
    counter = VisitCounter(observations)
    rows = []
    for k in range(1, checkpoints + 1):
        model.learn(k * n_timesteps // checkpoints - model.num_timesteps, callback=counter, reset_num_timesteps=False)
        live = ~mdp.terminal
        fit = float(np.abs(network_policy(model, observations) - target)[live].max())
        rows.append(
            {"steps": model.num_timesteps, "policy_fit": fit, **critic_errors(model, observations, q_true, counter.counts)}
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. n-1")
    parser.add_argument("-n", "--n-timesteps", type=int, default=100_000, help="environment steps of critic training")
    parser.add_argument("--checkpoints", type=int, default=5, help="measurements per run")
    parser.add_argument("--subgoals-off", action="store_true", help="FourRooms-v0 with subgoals=[] (default: sub-goals on)")
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    env_kwargs: dict[str, Any] = {"subgoals": []} if args.subgoals_off else {}
    start = time.perf_counter()
    print(f"QAC critic, actor frozen at 80% optimal + 20% uniform, {ENV_ID} {env_kwargs or '(default, sub-goals on)'}")
    widths = {"seed": 4, "steps": 7, "pairs": 5, "MAE": 7, "range": 6, "MAE/range": 9, "weighted": 8, "policy fit": 10}
    print(" ".join(f"{name:>{width}s}" for name, width in widths.items()))
    finals = []
    for seed in range(args.seeds):
        rows = run(seed, args.n_timesteps, env_kwargs, args.checkpoints)
        for row in rows:
            print(
                f"{seed:4d} {row['steps']:7d} {row['pairs']:5d} {row['mae']:7.4f} {row['range']:6.3f} {row['ratio']:9.1%} "
                f"{row['weighted_mae']:8.4f} {row['policy_fit']:10.3f}"
            )
        finals.append(rows[-1]["ratio"])
    verdict = "PASS" if max(finals) <= BAR else "FAIL"
    per_seed = " ".join(f"{ratio:.1%}" for ratio in finals)
    print(f"final MAE/range per seed: {per_seed}; bar <= {BAR:.0%}: {verdict}; {time.perf_counter() - start:.0f} s")
    print("MAE: over the visited (state, action) pairs; weighted: by visit counts; policy fit: max |pi - target| per entry")


if __name__ == "__main__":
    main()
