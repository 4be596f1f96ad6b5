"""Periodic checkpoints of an SB3 run (``--checkpoint-freq``) and continuing a run from the latest one (``--resume``).

A checkpoint of step t is ``model_<t>.zip`` plus, when they exist, ``vecnormalize_<t>.pkl``, ``replay_buffer_<t>.pkl`` and
``evaluations_<t>.npz`` (the evaluations so far). The model file is written last and renamed into place, so a checkpoint
whose model file exists is complete even if the process was killed while writing the next one.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from experiments.config import RunConfig

CHECKPOINTS_DIR = ".checkpoints"
_MODEL = re.compile(r"^model_(\d+)\.zip$")


def checkpoint_dir(config: RunConfig) -> Path:
    """:param config: a run
    :return: where its checkpoints go: ``<log_folder>/<algo>/.checkpoints/<run_name>`` (stable across attempts)"""
    return Path(config.log_folder) / config.algo / CHECKPOINTS_DIR / config.run_name


@dataclass(frozen=True)
class Checkpoint:
    """The files of one checkpoint."""

    folder: Path
    steps: int

    def path(self, stem: str, suffix: str) -> Path:
        """:param stem: ``model``, ``vecnormalize``, ``replay_buffer`` or ``evaluations``
        :param suffix: the file's extension
        :return: the file of this checkpoint"""
        return self.folder / f"{stem}_{self.steps}{suffix}"

    def restore(
        self, algo_class: type[BaseAlgorithm], env: VecEnv, device: str, tensorboard_log: str | None
    ) -> tuple[BaseAlgorithm, VecEnv]:
        """Load the model (and normalisation statistics, replay buffer) onto a freshly made training env.

        :param algo_class: the SB3 algorithm
        :param env: the run's training env (a ``VecNormalize`` when the run normalises)
        :param device: torch device
        :param tensorboard_log: TensorBoard folder of the new run folder
        :return: the model, ready for ``learn(..., reset_num_timesteps=False)``, and the training env
        """
        stats = self.path("vecnormalize", ".pkl")
        if isinstance(env, VecNormalize) and stats.exists():
            env = VecNormalize.load(str(stats), env.venv)
        model = algo_class.load(self.path("model", ".zip"), env=env, device=device, tensorboard_log=tensorboard_log)
        buffer = self.path("replay_buffer", ".pkl")
        if isinstance(model, OffPolicyAlgorithm) and buffer.exists():
            model.load_replay_buffer(buffer)
        return model, env

    def restore_evaluations(self, callback: EvalCallback | None) -> None:
        """:param callback: the new run's evaluation callback; it continues the evaluation history of the checkpoint"""
        path = self.path("evaluations", ".npz")
        if callback is None or not path.exists():
            return
        data = np.load(path)
        callback.evaluations_timesteps = [int(t) for t in data["timesteps"]]
        callback.evaluations_results = [list(r) for r in data["results"]]
        callback.evaluations_length = [list(r) for r in data["ep_lengths"]]


def latest_checkpoint(folder: Path) -> Checkpoint | None:
    """:param folder: a checkpoint folder
    :return: its complete checkpoint with the most steps, or None"""
    if not folder.is_dir():
        return None
    steps = [int(m.group(1)) for p in folder.iterdir() if (m := _MODEL.match(p.name))]
    return Checkpoint(folder, max(steps)) if steps else None


class CheckpointCallback(BaseCallback):
    """Save a checkpoint every ``save_freq`` calls (one call = one step of the vectorised env); keep the last ``keep``."""

    def __init__(self, folder: Path, save_freq: int, run_dir: Path, keep: int = 2) -> None:
        """:param folder: the checkpoint folder
        :param save_freq: calls between checkpoints
        :param run_dir: the run folder (its ``evaluations.npz`` is saved with each checkpoint)
        :param keep: checkpoints kept"""
        super().__init__()
        self.folder, self.save_freq, self.run_dir, self.keep = Path(folder), max(int(save_freq), 1), Path(run_dir), keep

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            self.save()
        return True

    def save(self) -> Checkpoint:
        """:return: the checkpoint written now (model last, renamed into place)"""
        self.folder.mkdir(parents=True, exist_ok=True)
        checkpoint = Checkpoint(self.folder, int(self.model.num_timesteps))
        normalize = self.model.get_vec_normalize_env()
        if normalize is not None:
            normalize.save(str(checkpoint.path("vecnormalize", ".pkl")))
        if isinstance(self.model, OffPolicyAlgorithm):
            self.model.save_replay_buffer(checkpoint.path("replay_buffer", ".pkl"))
        if (self.run_dir / "evaluations.npz").exists():
            shutil.copyfile(self.run_dir / "evaluations.npz", checkpoint.path("evaluations", ".npz"))
        tmp = self.folder / "model.tmp.zip"
        self.model.save(tmp)
        os.replace(tmp, checkpoint.path("model", ".zip"))
        self._prune()
        return checkpoint

    def _prune(self) -> None:
        steps = sorted(int(m.group(1)) for p in self.folder.iterdir() if (m := _MODEL.match(p.name)))
        for old in steps[: -self.keep]:
            for path in self.folder.glob(f"*_{old}.*"):
                path.unlink()


def checkpoint_callback(config: RunConfig, n_envs: int, run_dir: Path) -> CheckpointCallback | None:
    """:param config: the run (``checkpoint_freq`` in environment steps, summed over envs)
    :param n_envs: parallel envs
    :param run_dir: the run folder
    :return: the callback, or None when checkpoints are off"""
    if config.checkpoint_freq <= 0:
        return None
    return CheckpointCallback(checkpoint_dir(config), config.checkpoint_freq // n_envs, run_dir)


def resume_point(config: RunConfig) -> Checkpoint | None:
    """:param config: the run
    :return: the checkpoint to continue from when ``--resume`` is given, else None"""
    return latest_checkpoint(checkpoint_dir(config)) if config.resume else None


def discard(config: RunConfig) -> None:
    """Remove a finished run's checkpoints.

    :param config: the run
    """
    folder = checkpoint_dir(config)
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.parent.rmdir()
