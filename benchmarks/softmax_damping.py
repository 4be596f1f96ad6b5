"""Softmax damping on Digits-v0: cross-entropy vs escort cross-entropy, and policy gradient from bandit feedback.

Run from the repository root: ``python benchmarks/softmax_damping.py [--quick] [--out docs]``. Writes
``softmax_damping.md``, ``softmax_damping_loss.png`` and ``softmax_damping_pg.png`` to ``--out``.

1. Supervised: the actor network of SB3's policy (64-64 tanh MLP, linear head) trained on the bundled 8x8 digits
   with softmax cross-entropy and with escort cross-entropy (p = 2), by plain SGD and by Adam (minibatch 32). Each
   (loss, optimizer) pair gets its own step size: the one whose worse of two tuning seeds (not among the reported
   seeds) has the lowest late training loss; the reported curves are 5 further seeds.
2. Policy gradient: PPO on ``Digits-v0`` (reward 1 for the right label, one step per episode) with SB3's softmax
   ``ActorCriticPolicy`` and ``EscortActorCriticPolicy``, same hyperparameters; test accuracy vs samples, 5 seeds.

Bands are 95% Student-t intervals over seeds (of log10 values for losses and gradient norms). One thread; 2 to
7 minutes on one core (``--quick``: a smoke test of under a minute).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch as th  # noqa: E402
from scipy import stats  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for a checkout not pip-installed

from agents.supervised import Supervised  # noqa: E402
from benchmarks.provenance import after_runs, command, provenance  # noqa: E402
from envs.digits import DigitsEnv  # noqa: E402
from policies import EscortActorCriticPolicy  # noqa: E402

LOSSES = {"softmax": "cross-entropy (softmax)", "escort": "escort cross-entropy (p=2)"}
COLORS = {"softmax": "tab:blue", "escort": "tab:orange"}
OPTIMIZERS = {"sgd": "plain SGD", "adam": "Adam"}
STEP_SIZES = {"sgd": (0.01, 0.03, 0.1, 0.3, 1.0), "adam": (1e-3, 3e-3, 1e-2, 3e-2)}
TUNING_SEEDS = (100, 101)
PPO_KWARGS = {"n_steps": 32, "batch_size": 64, "n_epochs": 4, "learning_rate": 1e-3, "gamma": 0.99}
PPO_ENVS = 8


@dataclass(frozen=True)
class Settings:
    """The size of the study."""

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    epochs: int = 50
    tuning_epochs: int = 30
    pg_steps: int = 20_000
    pg_checkpoints: tuple[int, ...] = (0, 500, 1000, 2000, 3000, 4000, 6000, 8000, 10_000, 12_500, 15_000, 17_500, 20_000)


QUICK = Settings(seeds=(0, 1), epochs=4, tuning_epochs=2, pg_steps=1000, pg_checkpoints=(0, 500, 1000))


Key = tuple[str, str]


@dataclass
class Curves:
    """Per-seed curves of one configuration: arrays shaped (seeds, points)."""

    x: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)


def supervised_run(
    env: DigitsEnv, loss: str, optimizer: str, learning_rate: float, seed: int, epochs: int
) -> dict[str, np.ndarray]:
    """:return: per-epoch (0..epochs) train_loss, output_grad_norm, train_accuracy and test_accuracy of one run
    (nan from the epoch where training diverged)"""
    clf = Supervised(
        loss, env.observation_space, env.action_space, optimizer=optimizer, learning_rate=learning_rate, seed=seed
    )
    history = []
    try:
        clf.learn(env.dataset("train"), env.dataset("test"), epochs, callback=history.append)
    except FloatingPointError:
        pass
    names = ("train_loss", "output_grad_norm", "train_accuracy", "test_accuracy")
    padding = [math.nan] * (epochs + 1 - len(history))
    return {name: np.array([getattr(m, name) for m in history] + padding) for name in names}


def late_log_loss(run: dict[str, np.ndarray]) -> float:
    """:return: mean log10 training loss over the last third of the epochs (inf when it diverged)"""
    tail = run["train_loss"][-max(1, len(run["train_loss"]) // 3) :]
    return float(np.mean(np.log10(tail))) if np.all(np.isfinite(tail)) else math.inf


def tune(env: DigitsEnv, loss: str, optimizer: str, settings: Settings) -> tuple[float, dict[float, float]]:
    """:return: the step size whose worse tuning seed has the lowest late training loss, and every step size's score"""
    scores = {
        lr: max(late_log_loss(supervised_run(env, loss, optimizer, lr, seed, settings.tuning_epochs)) for seed in TUNING_SEEDS)
        for lr in STEP_SIZES[optimizer]
    }
    return min(scores, key=scores.__getitem__), scores


def supervised_study(env: DigitsEnv, settings: Settings) -> tuple[dict[Key, Curves], dict[Key, tuple[float, dict]]]:
    """:return: curves per (optimizer, loss) at the tuned step size, and the tuning results"""
    curves, tuning = {}, {}
    for optimizer in OPTIMIZERS:
        for loss in LOSSES:
            start = time.perf_counter()
            lr, scores = tune(env, loss, optimizer, settings)
            runs = [supervised_run(env, loss, optimizer, lr, seed, settings.epochs) for seed in settings.seeds]
            stacked = {k: np.stack([r[k] for r in runs]) for k in runs[0]}
            curves[optimizer, loss] = Curves(np.arange(settings.epochs + 1), stacked)
            tuning[optimizer, loss] = (lr, scores)
            print(f"supervised {optimizer:4s} {loss:7s} lr={lr:g}  {time.perf_counter() - start:.0f}s", flush=True)
    return curves, tuning


class AccuracyCheckpoints(BaseCallback):
    """Record the test accuracy of the greedy policy whenever the sample count passes a checkpoint."""

    def __init__(self, env: DigitsEnv, checkpoints: tuple[int, ...]):
        super().__init__()
        self.env, self.pending, self.accuracy = env, list(checkpoints), []

    def _on_training_start(self) -> None:
        self._record_passed()

    def _on_step(self) -> bool:
        self._record_passed()
        return True

    def _record_passed(self) -> None:
        while self.pending and self.num_timesteps >= self.pending[0]:
            self.pending.pop(0)
            self.accuracy.append(self.env.evaluate_accuracy(lambda x: self.model.predict(x, deterministic=True)[0]))


def pg_study(settings: Settings) -> dict[str, Curves]:
    """:return: test accuracy vs samples of PPO with each parameterization"""
    policies = {"softmax": "MlpPolicy", "escort": EscortActorCriticPolicy}
    results = {}
    for name, policy in policies.items():
        start = time.perf_counter()
        runs = []
        for seed in settings.seeds:
            env = make_vec_env(DigitsEnv, n_envs=PPO_ENVS, seed=seed)
            model = PPO(policy, env, seed=seed, device="cpu", **PPO_KWARGS)
            callback = AccuracyCheckpoints(DigitsEnv(), settings.pg_checkpoints)
            model.learn(settings.pg_steps, callback=callback)
            runs.append(callback.accuracy[: len(settings.pg_checkpoints)])
        results[name] = Curves(np.array(settings.pg_checkpoints), {"test_accuracy": np.array(runs)})
        print(f"ppo {name:7s} {time.perf_counter() - start:.0f}s", flush=True)
    return results


def band(values: np.ndarray, log: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:param values: (seeds, points)
    :param log: average log10 values (a geometric mean) and map back
    :return: mean and 95% Student-t interval per point"""
    data = np.log10(values) if log else values
    mean = data.mean(axis=0)
    half = stats.t.ppf(0.975, len(data) - 1) * data.std(axis=0, ddof=1) / math.sqrt(len(data)) if len(data) > 1 else 0 * mean
    low, high = mean - half, mean + half
    return (10**mean, 10**low, 10**high) if log else (mean, low, high)


def plot_band(ax: plt.Axes, x: np.ndarray, values: np.ndarray, label: str, color: str, log: bool = False) -> None:
    mean, low, high = band(values, log)
    ax.plot(x, mean, color=color, label=label)
    ax.fill_between(x, low, high, color=color, alpha=0.25, linewidth=0)


def plot_supervised(curves: dict[tuple[str, str], Curves], tuning: dict, path: Path) -> None:
    fig, axes = plt.subplots(3, 2, figsize=(11, 11))
    for col, optimizer in enumerate(OPTIMIZERS):
        for loss, label in LOSSES.items():
            c = curves[optimizer, loss]
            text = f"{label}, lr={tuning[optimizer, loss][0]:g}"
            plot_band(axes[0, col], c.x, c.values["train_loss"], text, COLORS[loss], log=True)
            plot_band(axes[1, col], c.x, c.values["output_grad_norm"], text, COLORS[loss], log=True)
            late = c.x >= 1
            mean_loss = 10 ** np.log10(c.values["train_loss"][:, late]).mean(axis=0)
            mean_grad = 10 ** np.log10(c.values["output_grad_norm"][:, late]).mean(axis=0)
            axes[2, col].plot(mean_loss, mean_grad, "o-", markersize=2, color=COLORS[loss], label=text)
        axes[0, col].set(yscale="log", xlabel="epoch", ylabel="training loss (training split)", title=OPTIMIZERS[optimizer])
        axes[1, col].set(yscale="log", xlabel="epoch", ylabel="gradient norm at the output layer")
        axes[2, col].set(xscale="log", yscale="log", xlabel="training loss", ylabel="gradient norm at the output layer")
        add_reference_slopes(axes[2, col])
        for ax in axes[:, col]:
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
    fig.suptitle("Digits-v0, 64-64 tanh MLP: geometric mean over seeds, 95% bands (rows 1-2); seed means (row 3)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_reference_slopes(ax: plt.Axes) -> None:
    low, high = ax.get_xlim()
    xs = np.geomspace(low, high, 10)
    anchor_y = np.sqrt(np.prod(ax.get_ylim()))
    anchor_x = np.sqrt(low * high)
    for slope, style in ((1.0, ":"), (0.5, "--")):
        ax.plot(xs, anchor_y * (xs / anchor_x) ** slope, "k" + style, linewidth=0.8, label=f"slope {slope:g}")


def plot_pg(pg: dict[str, Curves], supervised: dict[tuple[str, str], Curves], n_train: int, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, c in pg.items():
        plot_band(ax, c.x, c.values["test_accuracy"], f"PPO, {name} policy", COLORS[name])
    for loss in LOSSES:
        c = supervised["adam", loss]
        keep = c.x * n_train <= pg[next(iter(pg))].x[-1]
        mean = c.values["test_accuracy"].mean(axis=0)
        label = f"supervised ({LOSSES[loss]}, Adam), for scale"
        ax.plot(c.x[keep] * n_train, mean[keep], "--", color=COLORS[loss], linewidth=1, label=label)
    ax.set(xlabel="samples (examples seen)", ylabel="test accuracy (greedy)", ylim=(0, 1))
    ax.set_title("Digits-v0 as a contextual bandit")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def first_below(x: np.ndarray, values: np.ndarray, threshold: float) -> float:
    """:return: the first x whose value is below threshold (inf if never)"""
    below = np.flatnonzero(values < threshold)
    return float(x[below[0]]) if below.size else math.inf


def first_above(x: np.ndarray, values: np.ndarray, threshold: float) -> float:
    """:return: the first x whose value is at least threshold (inf if never)"""
    return first_below(x, -values, -threshold)


def lojasiewicz_slope(loss: np.ndarray, grad: np.ndarray) -> float:
    """:return: least-squares slope of log(gradient norm) against log(loss)"""
    return float(np.polyfit(np.log(loss), np.log(grad), 1)[0])


@dataclass(frozen=True)
class Difference:
    """Escort minus softmax: the mean difference over seeds and its 95% Welch interval."""

    mean: float
    low: float
    high: float

    @classmethod
    def of(cls, escort: np.ndarray, softmax: np.ndarray) -> Difference:
        if len(escort) < 2:
            diff = float(np.mean(escort) - np.mean(softmax))
            return cls(diff, -math.inf, math.inf)
        interval = stats.ttest_ind(escort, softmax, equal_var=False).confidence_interval(0.95)
        return cls(float(np.mean(escort) - np.mean(softmax)), float(interval.low), float(interval.high))

    def sign(self) -> int:
        """:return: +1 or -1 when the interval excludes 0, else 0"""
        return 1 if self.low > 0 else -1 if self.high < 0 else 0

    def __str__(self) -> str:
        return f"{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def per_seed(curves: dict[Key, Curves], settings: Settings) -> dict[Key, dict[str, np.ndarray]]:
    """:return: per (optimizer, loss), one value per seed: log10 final loss, accuracies, epochs to thresholds, slope"""
    start = max(1, settings.epochs // 5)
    values = {}
    for key, c in curves.items():
        loss, grad = c.values["train_loss"], c.values["output_grad_norm"]
        values[key] = {
            "log_loss": np.log10(loss[:, -1]),
            "train_acc": c.values["train_accuracy"][:, -1],
            "test_acc": c.values["test_accuracy"][:, -1],
            "to_0.1": np.array([first_below(c.x, r, 0.1) for r in loss]),
            "to_0.01": np.array([first_below(c.x, r, 0.01) for r in loss]),
            "slope": np.array([lojasiewicz_slope(lo[start:], g[start:]) for lo, g in zip(loss, grad)]),
        }
    return values


def early_checkpoint(x: np.ndarray) -> int:
    """:return: the index of the first checkpoint at or after a tenth of the run"""
    return int(np.searchsorted(x, x[-1] / 10))


def pg_per_seed(pg: dict[str, Curves]) -> dict[str, dict[str, np.ndarray]]:
    """:return: per policy, one value per seed: accuracy early (a tenth of the run) and at the end, mean accuracy over
    the run (trapezoid area / samples), samples to 90% test accuracy"""
    values = {}
    for name, c in pg.items():
        acc = c.values["test_accuracy"]
        area = np.sum(np.diff(c.x) * (acc[:, 1:] + acc[:, :-1]) / 2, axis=1) / (c.x[-1] - c.x[0])
        values[name] = {
            "early": acc[:, early_checkpoint(c.x)],
            "final": acc[:, -1],
            "auc": area,
            "to_90": np.array([first_above(c.x, r, 0.9) for r in acc]),
        }
    return values


def fmt_count(values: np.ndarray) -> str:
    """:return: the median, or how many seeds never got there"""
    never = int(np.sum(np.isinf(values)))
    median = float(np.median(values))
    if math.isinf(median):
        return f"never ({never}/{len(values)} seeds)"
    return f"{median:g}" + (f" ({never} never)" if never else "")


def verdict(diff: Difference, good: int) -> str:
    """:param good: the sign of the difference that favours escort
    :return: supported / contradicted / not resolved"""
    return {good: "supported", -good: "contradicted", 0: "not resolved (the interval includes 0)"}[diff.sign()]


def verdicts(seeds: dict[Key, dict[str, np.ndarray]], pg: dict[str, dict[str, np.ndarray]], x: np.ndarray) -> list[str]:
    """One line per claim, worded from the measurements (differences: escort minus softmax, 95% Welch intervals)."""
    lines = []
    for optimizer, name in OPTIMIZERS.items():
        e, s = seeds[optimizer, "escort"], seeds[optimizer, "softmax"]
        diff = Difference.of(e["log_loss"], s["log_loss"])
        lines.append(
            f"- **Escort cross-entropy drives the training loss down faster ({name})**: {verdict(diff, -1)}. "
            f"log10 of the final training loss, escort minus cross-entropy: {diff}. Epochs to a loss below 0.01: "
            f"escort {fmt_count(e['to_0.01'])}, cross-entropy {fmt_count(s['to_0.01'])}."
        )
    for optimizer, name in OPTIMIZERS.items():
        e, s = seeds[optimizer, "escort"], seeds[optimizer, "softmax"]
        diff = Difference.of(e["slope"], s["slope"])
        lines.append(
            f"- **Damping mechanism: the escort gradient vanishes more slowly with the loss ({name})**: "
            f"{verdict(diff, -1)}. Late-training slope of log(output gradient norm) against log(loss): "
            f"{s['slope'].mean():.2f} cross-entropy, {e['slope'].mean():.2f} escort (free-logit theory: 1 and 1/2); "
            f"difference {diff}."
        )
    e, s = pg["escort"], pg["softmax"]
    early, auc, final = (Difference.of(e[k], s[k]) for k in ("early", "auc", "final"))
    lines.append(
        f"- **Escort learns faster from bandit feedback (PPO)**, test accuracy escort vs softmax. "
        f"Early, after {x[early_checkpoint(x)]} samples: {verdict(early, 1)}; {e['early'].mean():.3f} vs "
        f"{s['early'].mean():.3f}, difference {early}. Mean over the run: {verdict(auc, 1)}; {e['auc'].mean():.3f} vs "
        f"{s['auc'].mean():.3f}, difference {auc}. At the end, after {x[-1]} samples: {verdict(final, 1)}; "
        f"{e['final'].mean():.3f} vs {s['final'].mean():.3f}, difference {final}. Samples to 90% test accuracy: "
        f"escort {fmt_count(e['to_90'])}, softmax {fmt_count(s['to_90'])}."
    )
    return lines


def accuracies(seeds: dict[Key, dict[str, np.ndarray]]) -> str:
    """:param seeds: what ``per_seed`` returns
    :return: the final test accuracy of each (optimizer, loss), mean (min) over seeds, as a sentence"""
    return "; ".join(
        f"{name}: " + ", ".join(f"{LOSSES[loss]} {seeds[o, loss]['test_acc'].mean():.3f} "
                                f"({seeds[o, loss]['test_acc'].min():.3f})" for loss in LOSSES)
        for o, name in OPTIMIZERS.items()
    )  # fmt: skip


#: Step sizes whose tuning scores differ by less than this (log10 loss) count as a close call.
CLOSE_CALL = 0.1


def close_calls(tuning: dict[Key, tuple[float, dict[float, float]]]) -> str:
    """:param tuning: (optimizer, loss) -> (chosen step size, score per step size)
    :return: a sentence naming the searches whose best two step sizes scored within ``CLOSE_CALL``"""
    calls = []
    for (o, loss), (_, scores) in tuning.items():
        (lr1, s1), (lr2, s2) = sorted(scores.items(), key=lambda item: item[1])[:2]
        if s2 - s1 < CLOSE_CALL:
            calls.append(f"{OPTIMIZERS[o]} with {LOSSES[loss]}: {lr1:g} ({s1:.2f}) against {lr2:g} ({s2:.2f})")
    if not calls:
        return f"Every step-size search chose by a margin of at least {CLOSE_CALL:g} in its score."
    return (
        f"Close calls of the step-size search (best two within {CLOSE_CALL:g} in the score): {'; '.join(calls)}. Two "
        "tuning seeds cannot tell such step sizes apart, and the reported seeds may favour the one not chosen."
    )


TABLE_COLUMNS = (
    "optimizer",
    "loss",
    "step size",
    "final training loss",
    "epochs to loss < 0.1",
    "epochs to loss < 0.01",
    "slope log grad / log loss",
    "train acc",
    "test acc: mean (min)",
)


def markdown_table(columns: tuple[str, ...], rows: list[str]) -> str:
    return "\n".join(["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|", *rows])


def report(
    curves: dict[Key, Curves], tuning: dict, pg: dict[str, Curves], settings: Settings, wall: float, started: str
) -> str:
    """:param curves: the supervised curves
    :param tuning: the step-size search
    :param pg: the PPO curves
    :param settings: the size of the study
    :param wall: seconds the study took
    :param started: ``benchmarks.provenance.provenance()`` at the start
    :return: the Markdown report"""
    seeds, pg_seeds = per_seed(curves, settings), pg_per_seed(pg)
    rows = [
        f"| {OPTIMIZERS[o]} | {LOSSES[loss]} | {tuning[o, loss][0]:g} | {10 ** v['log_loss'].mean():.2e} | "
        f"{fmt_count(v['to_0.1'])} | {fmt_count(v['to_0.01'])} | {v['slope'].mean():.2f} | {v['train_acc'].mean():.3f} | "
        f"{v['test_acc'].mean():.3f} ({v['test_acc'].min():.3f}) |"
        for (o, loss), v in seeds.items()
    ]
    tuning_rows = [
        f"| {OPTIMIZERS[o]} | {LOSSES[loss]} | " + ", ".join(f"{lr:g}: {score:.2f}" for lr, score in scores.items()) + " |"
        for (o, loss), (_, scores) in tuning.items()
    ]
    means = {name: pg[name].values["test_accuracy"].mean(axis=0) for name in ("softmax", "escort")}
    pg_rows = [f"| {x} | {means['softmax'][i]:.3f} | {means['escort'][i]:.3f} |" for i, x in enumerate(pg["softmax"].x)]
    return TEMPLATE.format(
        seeds=len(settings.seeds),
        epochs=settings.epochs,
        tuning_epochs=settings.tuning_epochs,
        tuning_seeds=" and ".join(map(str, TUNING_SEEDS)),
        ppo=", ".join(f"{k}={v:g}" for k, v in PPO_KWARGS.items()) + f", n_envs={PPO_ENVS}",
        verdicts="\n".join(verdicts(seeds, pg_seeds, pg["softmax"].x)),
        table=markdown_table(TABLE_COLUMNS, rows),
        tuning=markdown_table(("optimizer", "loss", "step size: score"), tuning_rows),
        pg_table=markdown_table(("samples", "softmax", "escort"), pg_rows),
        accuracies=accuracies(seeds),
        close_calls=close_calls(tuning),
        wall=wall / 60,
        command=command(),
        started=started,
        after=after_runs(),
    )


TEMPLATE = """# Softmax damping: cross-entropy vs escort cross-entropy on Digits-v0

Generated by `{command}` ({wall:.1f} minutes on one CPU thread). {started} (at the start). {after}.

Data: scikit-learn's bundled 8x8 digits as `Digits-v0` serves them (1347 training, 450 test examples, fixed stratified
split). Network: the actor of SB3's default policy (64-64 tanh MLP, linear head; escort head initialised near uniform as
in `EscortActorCriticPolicy`), trained with minibatches of 32. {seeds} seeds per curve.

## What the runs say

Differences are escort minus softmax, mean over seeds with a 95% Welch interval in brackets. A claim counts as
supported only when the interval excludes 0 in its favour.

{verdicts}

## 1. Supervised: training loss per epoch

![training loss, gradient norm](softmax_damping_loss.png)

Rows: training loss over the whole training split (log scale), the norm of its gradient with respect to the output
layer, and that norm against the loss (log-log; reference slopes 1 and 1/2). Bands: 95% intervals over seeds.

The claim ("softmax damping"): with softmax, the gradient of cross-entropy vanishes in proportion to the loss as
predictions become confident, so gradient descent slows to an O(1/t) rate; the escort gradient vanishes only like the
square root of the loss (Lojasiewicz exponent 1/2), so escort cross-entropy keeps a linear pace. The derivation is for
exact gradients on free logits; here the logits come from a network and the gradients from minibatches.

Each (optimizer, loss) pair uses its own step size, chosen on seeds {tuning_seeds} (not among the reported seeds): the
one whose worse tuning seed has the lowest mean log10 training loss over the last third of {tuning_epochs} epochs.

{table}

After {epochs} epochs. Training loss: geometric mean over seeds; epochs: medians over seeds; slope: mean over seeds of
the least-squares slope of log(gradient norm) on log(loss) from a fifth of the run on.

Step-size search (worse tuning seed's mean log10 training loss over the last third of the run; lower is better):

{tuning}

## 2. Policy gradient: accuracy vs samples

![accuracy vs samples](softmax_damping_pg.png)

PPO ({ppo}) on `Digits-v0`: one example per episode, reward 1 for the right label. Softmax is SB3's
`ActorCriticPolicy`, escort is `EscortActorCriticPolicy` (p=2); everything else is identical, including the step
size. Test accuracy of the greedy policy on the 450 held-out examples; mean over {seeds} seeds (bands: 95% intervals).
The dashed lines are the supervised Adam runs of part 1 against examples seen, for scale: they receive the label,
the bandit only one bit per example.

{pg_table}

## Reading the results

- The damping mechanism is there: under both optimizers the output-layer gradient of cross-entropy shrinks about in
  proportion to the training loss, and the escort gradient more slowly. In these runs it does not buy escort a faster
  decrease of the training loss; cross-entropy gets lower, sooner, with either optimizer. The theory's setting
  differs from this one in ways that may explain it, none isolated here: the logits are outputs of a shared network,
  not free parameters; escort is scale invariant, so growth of the head's output shrinks its effective step; the
  gradients are minibatch estimates and the step size is constant.
- With plain SGD, escort cross-entropy tolerates only about a tenth of the step size of cross-entropy (step-size
  search: from 0.1 on, at least one tuning seed fails). Its gradient with respect to the head's output,
  `-(p / theta_y) e_y + ...`, is unbounded where the right class's `theta_y` is near 0, while that of softmax
  cross-entropy is bounded by sqrt(2). At the step size that works, its training loss stalls at a few tenths while
  its gradient norm stays of order 1.
- Adam rescales each coordinate's step by its running gradient magnitude, which offsets a vanishing gradient: the
  damping the theory describes is a property of plain gradient steps.
- Final test accuracy, mean (min) over seeds: {accuracies}. {close_calls}
- With PPO the two parameterizations differ, if at all, early in training (first few thousand samples); the runs do
  not resolve a difference in final accuracy.

Reproduce: `python benchmarks/softmax_damping.py`. One run from the command line:
`python train.py --algo supervised --policy escort --env Digits-v0` (Adam, the defaults), or
`--hyperparams optimizer=sgd learning_rate=0.03 -n 50` for plain SGD.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test: 2 seeds, a few epochs and steps")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs", help="output folder")
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    settings = QUICK if args.quick else Settings()
    args.out.mkdir(parents=True, exist_ok=True)
    start, started = time.perf_counter(), provenance()
    print(started, flush=True)
    env = DigitsEnv()
    curves, tuning = supervised_study(env, settings)
    pg = pg_study(settings)
    plot_supervised(curves, tuning, args.out / "softmax_damping_loss.png")
    plot_pg(pg, curves, env.n_train, args.out / "softmax_damping_pg.png")
    text = report(curves, tuning, pg, settings, time.perf_counter() - start, started)
    (args.out / "softmax_damping.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
