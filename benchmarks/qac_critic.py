"""How well QAC's critic learns the advantages A^pi of a fixed policy on FourRooms-v0, against the exact A^pi.

The policy takes the optimal action with probability 0.8 + 0.2/4 and each other action with 0.2/4 (80% optimal,
20% uniform). QAC's softmax actor is fitted to it (cross-entropy on every state's observation), then frozen
(``actor_update="none"``) while QAC trains its critic on the policy's own rollouts. The truth is ``Q^pi`` of the
network's actual policy, from ``transition_model()`` and ``policy_evaluation``; advantages are
``A(s, a) = Q(s, a) - sum_b pi(b|s) Q(s, b)`` for the learned and for the exact ``Q``, with the network's ``pi``.

The actor consumes advantages, which are about a hundredth of the spread of ``Q`` between states, so the critic is
judged on them, over every action of the states visited at least ``--min-visits`` (100) times in training:

- ``MAE/med``: mean ``|A - A^pi|`` over the median ``|A^pi|``;
- ``corr``: Pearson correlation of ``A`` and ``A^pi`` over those (state, action) pairs;
- ``sign``: the share of pairs with ``|A^pi|`` above a tenth of the median ``|A^pi|`` where ``A`` has the sign of ``A^pi``;
- ``argmax``: the share of states where ``argmax_a Q(s, a)`` is an ``argmax_a Q^pi(s, a)`` (exact ties count as one).

``argmax|clear`` is ``argmax`` over the ``clear`` states, those whose best exact ``Q^pi`` beats the second best by more
than a tenth of the median ``|A^pi|``; in the other states two actions are within about 1e-3 of each other. The bar, on
every seed: ``corr >= 0.9`` and ``argmax >= 90%``.

    python benchmarks/qac_critic.py [--seeds 3] [-n 100000] [--subgoals-off] [--hyperparams k=v ...]

``--hyperparams`` overrides ``hyperparams/qac.yml`` (e.g. ``td_lambda=0.5``, ``'policy_kwargs={dueling: true}'``).

What was tried: the default FourRooms-v0 (sub-goals on), 100k steps, seeds 0, 1, 2; each cell is the mean over the seeds
and the worst seed (min; max for ``MAE/med``). The baseline is the FourRooms-v0 block of ``hyperparams/qac.yml`` before
these measurements (learning_rate 1e-3, n_epochs 4, batch_size 64, n_steps 16, n_envs 8, td_lambda 0.9, tau 0.05, a
linear Q head, no replay; ``--hyperparams td_lambda=0.9 replay_rollouts=0 replay_updates=0`` today); every other row
changes what it names. "replay K x U": ``replay_rollouts=K replay_updates=U``. A dash: not printed by that version of
the script.

    setting                                        corr         argmax       MAE/med    sign         argmax|clear
    baseline                                       0.616/0.581  60.4%/52.6%  0.80/0.85  80.7%/78.1%  -
    td_lambda=0                                    0.656/0.618  67.3%/62.0%  0.75/0.80  85.4%/83.0%  -
    td_lambda=0.5                                  0.661/0.598  67.2%/65.4%  0.72/0.79  85.1%/84.1%  -
    td_lambda=1                                    0.509/0.387  51.4%/32.1%  1.06/1.32  74.7%/66.4%  -
    n_epochs=16                                    0.547/0.468  58.7%/50.0%  1.04/1.08  79.8%/78.4%  -
    learning_rate=3e-4                             0.514/0.378  57.5%/50.0%  1.03/1.21  75.1%/67.8%  -
    tau=0.01                                       0.598/0.560  62.1%/53.8%  0.82/0.84  79.9%/77.7%  -
    n_steps=64                                     0.575/0.554  60.0%/52.6%  0.81/0.86  81.5%/79.4%  -
    n_steps=128 batch_size=256                     0.494/0.410  60.8%/50.0%  0.99/1.14  76.8%/70.1%  -
    n_envs=32                                      0.639/0.614  63.1%/62.0%  0.86/0.88  81.4%/80.0%  -
    dueling head                                   0.630/0.614  65.1%/62.8%  0.83/0.90  81.7%/78.4%  -
    dueling head, td_lambda=0                      0.635/0.614  65.5%/64.1%  0.76/0.85  85.9%/83.7%  -
    replay 50 x 56, td_lambda=0                    0.884/0.857  74.9%/69.2%  0.33/0.37  94.3%/91.4%  89.1%/82.7%
    replay 50 x 120                                0.887/0.874  76.2%/74.7%  0.29/0.31  94.8%/94.1%  91.0%/90.4%
    replay 50 x 120, td_lambda=0                   0.916/0.859  78.3%/75.6%  0.25/0.34  96.7%/95.3%  91.7%/88.5%
    replay 50 x 120, td_lambda=0, lr 5e-4          0.924/0.890  76.2%/73.1%  0.24/0.27  97.1%/96.0%  91.7%/90.4%
    replay 50 x 120, td_lambda=0, dueling head     0.913/0.909  76.6%/72.2%  0.25/0.26  95.7%/95.0%  90.4%/86.5%
    replay 100 x 120, td_lambda=0                  0.935/0.894  78.7%/76.9%  0.22/0.26  96.7%/94.4%  89.7%/86.5%
    replay 50 x 200, td_lambda=0 (the default)     0.933/0.905  76.6%/71.8%  0.21/0.26  96.7%/95.0%  90.4%/88.5%

Without the replay no setting gets past a correlation of 0.67, and neither do more steps: at 400k steps (seed 0) the
baseline reads 0.669 and the dueling head 0.655. On-policy minibatches hold a few trajectory pieces each, and the
critic, fitted to them one rollout after another, does not resolve differences of 1e-2 between the actions of a state;
drawn from the last 50 rollouts, with enough steps, it does. The argmax bar is not met: about a third of the
well-visited states (26 of 78) have two actions within a tenth of the median ``|A^pi|`` (about 1e-3) of each other,
below the critic's mean ``|Q - Q^pi|`` of 0.002-0.003; on the other states the argmax is right about 90% of the time.
The dueling head changes the fitted actor too (it draws its initial weights from the same generator), so its rows
compare different policies; with the replay it gains nothing outside the noise between seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for a checkout not pip-installed

import envs  # noqa: E402
from agents import QAC  # noqa: E402
from envs.make import env_family, make_vec_env  # noqa: E402
from experiments.config import parse_key_values  # noqa: E402
from experiments.errors import UsageError  # noqa: E402
from experiments.hyperparams import load_hyperparams, schedule  # noqa: E402

ENV_ID = "FourRooms-v0"
OPTIMAL_SHARE = 0.8
MIN_VISITS = 100
SIGN_FRACTION = 0.1
"""Sign agreement counts the pairs with ``|A^pi|`` above this fraction of the median ``|A^pi|``."""
TIE_TOLERANCE = 1e-9
"""Actions whose exact ``Q^pi`` is within this of the state's best are all argmax actions."""
BARS = {"correlation": 0.9, "argmax_agreement": 0.9}
WORST = {"states": np.min, "median_abs_advantage": np.min, "mae_ratio": np.max, "q_mae": np.max, "policy_fit": np.max}
"""How the worst seed is found for each column (``np.min`` where not named: higher is better)."""
RUNNER_KEYS = ("n_timesteps", "n_envs", "policy", "policy_kwargs", "normalize", "frame_stack", "eval_deterministic")
COLUMNS = {
    "seed": ("{:>5}", 5),
    "steps": ("{:>7d}", 7),
    "states": ("{:>6.0f}", 6),
    "med|A|": ("{:>7.4f}", 7),
    "MAE/med": ("{:>7.2f}", 7),
    "corr": ("{:>6.3f}", 6),
    "sign": ("{:>6.1%}", 6),
    "argmax": ("{:>6.1%}", 6),
    "clear": ("{:>5.0f}", 5),
    "argmax|clear": ("{:>12.1%}", 12),
    "Q MAE": ("{:>7.4f}", 7),
    "fit": ("{:>6.3f}", 6),
}
KEYS = (
    "seed",
    "steps",
    "states",
    "median_abs_advantage",
    "mae_ratio",
    "correlation",
    "sign_agreement",
    "argmax_agreement",
    "clear_states",
    "argmax_clear_agreement",
    "q_mae",
    "policy_fit",
)


def advantages(q: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """:param q: ``(S, A)`` action values
    :param pi: ``(S, A)`` action probabilities
    :return: ``A(s, a) = Q(s, a) - sum_b pi(b|s) Q(s, b)``, shape ``(S, A)``"""
    return q - (pi * q).sum(axis=1, keepdims=True)


def advantage_metrics(
    q_learned: np.ndarray,
    q_true: np.ndarray,
    pi: np.ndarray,
    visits: np.ndarray,
    min_visits: int = MIN_VISITS,
    sign_fraction: float = SIGN_FRACTION,
) -> dict[str, float]:
    """How well learned advantages match the exact ones, on the states visited at least ``min_visits`` times.

    :param q_learned: ``(S, A)`` learned ``Q``
    :param q_true: ``(S, A)`` exact ``Q^pi``
    :param pi: ``(S, A)`` the policy both advantages are taken under
    :param visits: ``(S,)`` visit count of every state
    :param min_visits: states visited fewer times are left out
    :param sign_fraction: sign agreement counts the pairs with ``|A^pi| > sign_fraction * median |A^pi|``
    :return: ``states`` kept, ``median_abs_advantage`` (of ``A^pi``), ``mae_ratio`` (mean ``|A - A^pi|`` over that median),
        ``correlation`` (Pearson, over the kept pairs), ``sign_pairs`` and ``sign_agreement``, ``argmax_agreement``
        (share of kept states whose learned argmax is an exact argmax), ``clear_states`` and ``argmax_clear_agreement`` (the
        same over the kept states whose best exact ``Q^pi`` beats the second best by more than ``sign_fraction`` times
        the median ``|A^pi|``), ``q_mae`` (mean ``|Q - Q^pi|``)
    :raises ValueError: if no state was visited ``min_visits`` times
    """
    kept = np.asarray(visits) >= min_visits
    if not kept.any():
        raise ValueError(f"no state was visited {min_visits} times; train longer or lower min_visits")
    learned, exact = advantages(q_learned[kept], pi[kept]), advantages(q_true[kept], pi[kept])
    median = float(np.median(np.abs(exact)))
    clear = np.abs(exact) > sign_fraction * median
    chosen = np.take_along_axis(q_true[kept], q_learned[kept].argmax(axis=1)[:, None], axis=1)[:, 0]
    right = chosen >= q_true[kept].max(axis=1) - TIE_TOLERANCE
    top_two = np.sort(q_true[kept], axis=1)[:, -2:]
    clear_best = top_two[:, 1] - top_two[:, 0] > sign_fraction * median
    return {
        "states": int(kept.sum()),
        "median_abs_advantage": median,
        "mae_ratio": float(np.abs(learned - exact).mean() / median),
        "correlation": float(np.corrcoef(learned.ravel(), exact.ravel())[0, 1]),
        "sign_pairs": int(clear.sum()),
        "sign_agreement": float((np.sign(learned[clear]) == np.sign(exact[clear])).mean()),
        "argmax_agreement": float(right.mean()),
        "clear_states": int(clear_best.sum()),
        "argmax_clear_agreement": float(right[clear_best].mean()) if clear_best.any() else float("nan"),
        "q_mae": float(np.abs(q_learned[kept] - q_true[kept]).mean()),
    }


class VisitCounter(BaseCallback):
    """Counts the states of every rollout, mapping observations to the model's state indices.

    :param observations: ``(S, obs_dim)`` observation of every state
    """

    def __init__(self, observations: np.ndarray):
        super().__init__()
        self.index = {row.tobytes(): state for state, row in enumerate(observations)}
        self.counts = np.zeros(len(observations), dtype=np.int64)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        obs = buffer.observations.reshape(-1, buffer.observations.shape[-1])
        np.add.at(self.counts, [self.index[row.tobytes()] for row in obs], 1)


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


def learned_q(model: QAC, observations: np.ndarray) -> np.ndarray:
    """:return: ``(S, A)`` the online critic's ``Q`` on every state (float64)"""
    with th.no_grad():
        return model.policy.q_values(th.as_tensor(observations)).double().numpy()


def build_model(seed: int, env_kwargs: dict[str, Any], overrides: dict[str, Any]) -> QAC:
    """:return: QAC with ``hyperparams/qac.yml`` for FourRooms-v0, ``overrides`` on top, the actor frozen"""
    frozen = {"ent_coef": 0.0, **overrides, "actor_update": "none"}
    hp = load_hyperparams("qac", ENV_ID, env_family(ENV_ID), frozen)
    kwargs = {key: schedule(value) if key == "learning_rate" else value for key, value in hp.items() if key not in RUNNER_KEYS}
    env = make_vec_env(ENV_ID, int(hp["n_envs"]), seed, env_kwargs=env_kwargs)
    if not isinstance(hp.get("policy_kwargs") or {}, dict):
        raise UsageError(
            f"policy_kwargs must be a mapping (e.g. 'policy_kwargs={{dueling: true}}'), got {hp['policy_kwargs']!r}"
        )
    policy_kwargs = {**(hp.get("policy_kwargs") or {}), "parameterization": "softmax"}
    try:
        return QAC("MlpPolicy", env, policy_kwargs=policy_kwargs, seed=seed, device="cpu", **kwargs)
    except (TypeError, ValueError) as err:
        raise UsageError(f"hyperparameters do not fit QAC: {err}") from None


def run(
    seed: int, n_timesteps: int, env_kwargs: dict[str, Any], checkpoints: int, overrides: dict[str, Any], min_visits: int
) -> list[dict[str, float]]:
    """Fit, freeze, train the critic; measure its advantages at ``checkpoints`` evenly spaced points.

    :return: one dict of :func:`advantage_metrics` per checkpoint, with ``seed``, ``steps`` and ``policy_fit`` (the
        largest ``|pi - target|`` of the fitted policy)
    """
    model = build_model(seed, env_kwargs, overrides)
    base = envs.FourRoomsEnv(**env_kwargs)
    mdp, observations = base.transition_model(), base.observations()
    target = target_policy(mdp)
    pi = fit_actor(model, observations, target)
    q_true = envs.policy_evaluation(mdp, pi)[1]
    counter = VisitCounter(observations)
    rows = []
    for k in range(1, checkpoints + 1):
        model.learn(k * n_timesteps // checkpoints - model.num_timesteps, callback=counter, reset_num_timesteps=False)
        fit = float(np.abs(network_policy(model, observations) - target)[~mdp.terminal].max())
        metrics = advantage_metrics(learned_q(model, observations), q_true, pi, counter.counts, min_visits)
        rows.append({"seed": seed, "steps": model.num_timesteps, "policy_fit": fit, **metrics})
    return rows


def format_row(row: dict[str, Any]) -> str:
    """:return: one line of the table, the columns of ``COLUMNS``"""
    return " ".join(spec.format(row[key]) for key, (spec, _) in zip(KEYS, COLUMNS.values(), strict=True))


def summary(finals: list[dict[str, float]]) -> list[str]:
    """:return: the mean and worst rows over seeds (min of the agreements, max of the errors), and the verdict"""
    mean = {key: float(np.mean([final[key] for final in finals])) for key in KEYS[2:]}
    worst = {key: float(WORST.get(key, np.min)([final[key] for final in finals])) for key in KEYS[2:]}
    lines = [
        format_row({**row, "seed": name, "steps": finals[0]["steps"]}) for name, row in (("mean", mean), ("worst", worst))
    ]
    passed = all(final[key] >= bar for final in finals for key, bar in BARS.items())
    bars = " and ".join(f"{key} >= {bar:.0%}" if key != "correlation" else f"{key} >= {bar}" for key, bar in BARS.items())
    lines.append(f"bar on every seed: {bars}: {'PASS' if passed else 'FAIL'}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. n-1")
    parser.add_argument("-n", "--n-timesteps", type=int, default=100_000, help="environment steps of critic training")
    parser.add_argument("--checkpoints", type=int, default=4, help="measurements per run")
    parser.add_argument("--min-visits", type=int, default=MIN_VISITS, help="states visited fewer times are left out")
    parser.add_argument("--subgoals-off", action="store_true", help="FourRooms-v0 with subgoals=[] (default: sub-goals on)")
    parser.add_argument("--hyperparams", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of hyperparams/qac.yml")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.checkpoints < 1 or args.n_timesteps < args.checkpoints:
        parser.error("--seeds and --checkpoints must be >= 1 and -n at least --checkpoints")
    try:
        overrides = parse_key_values(args.hyperparams, "--hyperparams")
        th.set_num_threads(1)
        env_kwargs: dict[str, Any] = {"subgoals": []} if args.subgoals_off else {}
        start = time.perf_counter()
        variant = env_kwargs or "(default, sub-goals on)"
        print(f"QAC critic, actor frozen at 80% optimal + 20% uniform, {ENV_ID} {variant}, overrides {overrides or 'none'}")
        print(" ".join(f"{name:>{width}s}" for name, (_, width) in COLUMNS.items()))
        finals = []
        for seed in range(args.seeds):
            rows = run(seed, args.n_timesteps, env_kwargs, args.checkpoints, overrides, args.min_visits)
            print("\n".join(format_row(row) for row in rows), flush=True)
            finals.append(rows[-1])
    except UsageError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    print("\n".join(summary(finals)))
    print(
        f"over every action of the states visited >= {args.min_visits} times; sign: pairs with |A^pi| > "
        f"{SIGN_FRACTION:.0%} of the median |A^pi|; clear: states whose best Q^pi leads the second by more than that; "
        f"Q MAE: mean |Q - Q^pi|; fit: max |pi - target|; worst: min over seeds, max for MAE/med, Q MAE and fit; "
        f"{time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
