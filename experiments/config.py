"""The configuration of one run: every field is documented, and the documentation becomes ``train.py --help``."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from experiments.errors import UsageError

DEFAULT_PI0 = 0.01
"""``pi(a*|s)`` of the adversarial start when ``--pi0`` is not given (the ``pi0`` of ``hyperparams/exact.yml``)."""


#: Algorithms on a tabular model (exact or sampled policy gradient): scores are the exact values of their policy.
TABULAR_ALGOS = ("exact", "tabular")


@dataclass
class RunConfig:
    """One training run: an algorithm, a policy parameterization, an environment and a seed."""

    algo: str = field(
        default="ppo",
        metadata={"help": "learning algorithm: ppo, a2c, qac, exact, tabular (exact or sampled gradients) or supervised"},
    )
    env: str = field(
        default="FourRooms-v0",
        metadata={"help": "Gymnasium environment id (FourRooms-v0, CartPole-v1, ALE/Pong-v5, MiniGrid-DoorKey-5x5-v0, ...)"},
    )
    policy: str = field(
        default="escort",
        metadata={"help": "policy parameterization: softmax, escort (and neurd, gnpg where the algorithm has them)"},
    )
    p: float = field(default=2.0, metadata={"help": "escort power p > 0 in pi(a) = |theta_a|^p / sum_b |theta_b|^p"})
    init: str | None = field(
        default=None,
        metadata={
            "help": "initial policy: uniform (the near-uniform start of the network's init) or adversarial (in every state "
            "pi0 on the best action a* = argmax Q*, pi0^2 on each other action but one, the rest on the best sub-optimal "
            "action: agents.ExactPG's adversarial start; ppo, a2c and qac fit the actor to it before training, the critic "
            "untouched, on envs with a transition model such as FourRooms-v0 and Bandit-v0; summary.json reports the "
            "pi(a*|s) reached). exact and tabular also take random. Default: uniform; for exact and tabular, the init of "
            "their hyperparameter file, which --init overrides"
        },
    )
    pi0: float | None = field(
        default=None,
        metadata={
            "help": f"pi(a*|s) of the adversarial start, in (0, 0.3]; only with --init adversarial (an error otherwise). "
            f"Default: {DEFAULT_PI0:g}; for exact and tabular, the pi0 of their hyperparameter file, which --pi0 overrides"
        },
    )
    seed: int = field(default=0, metadata={"help": "random seed of the run (environments, network initialisation, sampling)"})
    n_timesteps: int | None = field(
        default=None,
        metadata={
            "help": "environment steps (iterations for exact and tabular, epochs for supervised); default: from the "
            "hyperparameter file"
        },
    )
    n_envs: int | None = field(
        default=None, metadata={"help": "number of parallel environments; default: from the hyperparameter file"}
    )
    no_batched_env: bool = field(
        default=False,
        metadata={
            "help": "step each FourRooms-v0 copy on its own in SB3's DummyVecEnv instead of all --n-envs copies "
            "together in the batched numpy env (same dynamics; the batched env is faster with many copies)"
        },
    )
    eval_freq: int = field(
        default=10_000,
        metadata={
            "help": "evaluate every this many environment steps (summed over environments); <= 0 turns periodic evaluation off"
        },
    )
    eval_episodes: int = field(default=10, metadata={"help": "episodes per evaluation"})
    device: str = field(default="cpu", metadata={"help": "torch device: cpu, cuda, auto"})
    num_threads: int = field(
        default=-1,
        metadata={
            "help": "torch threads for this run, as rl-zoo3's --num-threads; -1 keeps torch's default. 1 is often fastest "
            "for small MLPs on a shared CPU (study workers use 1 unless this is set). The thread count changes the numbers; "
            "config.yml records the count in effect (provenance: torch_num_threads)"
        },
    )
    hyperparams: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "overrides of the hyperparameter file, k=v with YAML values (e.g. learning_rate=1e-3 n_steps=256)"},
    )
    env_kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "keyword arguments of the environment, k=v with YAML values (e.g. subgoals=[] slip=0.1)"},
    )
    eval_env_kwargs: dict[str, Any] | None = field(
        default=None,
        metadata={
            "help": "keyword arguments of the evaluation env, k=v with YAML values (e.g. slip=0.0 to train with slip and "
            "evaluate without); default: the training env's --env-kwargs; the flag with no pairs: the registered defaults"
        },
    )
    n_eval_envs: int = field(default=1, metadata={"help": "parallel copies of the evaluation env (rl-zoo3's --n-eval-envs)"})
    conf_file: str | None = field(
        default=None,
        metadata={
            "help": "YAML hyperparameter file in rl-zoo3's layout (a block per env id, family blocks atari/minigrid, an "
            "optional default block) used instead of hyperparams/<algo>.yml; config.yml records its path and SHA-256"
        },
    )
    gym_packages: list[str] = field(
        default_factory=list,
        metadata={
            "help": "modules to import before any env is made, so that the envs they register can be used (as rl-zoo3's "
            "--gym-packages; study workers import them too); --env MODULE:ID imports one module for one id"
        },
    )
    log_folder: str = field(default="logs", metadata={"help": "folder that receives one sub-folder per run"})
    progress: bool = field(default=False, metadata={"help": "show a progress bar (always on in an interactive terminal)"})
    checkpoint_freq: int = field(
        default=0,
        metadata={
            "help": "save a checkpoint every this many environment steps into <log-folder>/<algo>/.checkpoints/<run>/ "
            "(ppo, a2c, qac; 0: off); --resume continues from the latest"
        },
    )
    resume: bool = field(
        default=False, metadata={"help": "continue this run from its latest checkpoint (see --checkpoint-freq)"}
    )
    verbose: int = field(default=1, metadata={"help": "0: quiet, 1: summary lines, 2: SB3's training tables"})

    def to_dict(self) -> dict[str, Any]:
        """:return: the fields as plain Python values (for ``config.yml``)."""
        return dataclasses.asdict(self)

    @property
    def evaluation_env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the evaluation env: ``--eval-env-kwargs`` where given, else the training env's."""
        return dict(self.env_kwargs if self.eval_env_kwargs is None else self.eval_env_kwargs)

    @property
    def start_pi0(self) -> float:
        """``pi0`` of the adversarial start of ppo, a2c and qac: ``--pi0``, or ``DEFAULT_PI0``."""
        return DEFAULT_PI0 if self.pi0 is None else self.pi0

    def start_overrides(self) -> dict[str, Any]:
        """:return: ``init`` and ``pi0`` where given: for ``exact`` and ``tabular`` they override the hyperparameter
        file's"""
        return {name: value for name, value in (("init", self.init), ("pi0", self.pi0)) if value is not None}

    @property
    def run_name(self) -> str:
        """The run folder's name: environment, policy (with p for escort), the start when ``--init`` is given and not
        uniform (``adversarial``, with ``--pi0`` where given: ``adversarial-0.001``) and seed, safe for file systems."""
        env = self.env.replace("/", "-").replace(":", "-")
        policy = f"{self.policy}-p{self.p:g}" if self.policy == "escort" else self.policy
        start = "" if self.init in (None, "uniform") else f"_{self.init}" + ("" if self.pi0 is None else f"-{self.pi0:g}")
        return f"{env}_{policy}{start}_s{self.seed}"


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2 floats: ``1e-3`` and ``1e5`` are numbers, as users (and rl-zoo3's files) write them."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.inf|\.nan)$"
    ),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """:param text: YAML text
    :return: its value, reading ``1e-3`` as a float"""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def parse_key_values(pairs: list[str], what: str) -> dict[str, Any]:
    """Parse ``k=v`` strings whose values are YAML (``lr=1e-3``, ``subgoals=[]``, ``net_arch=[64, 64]``).

    :param pairs: the strings as given on the command line
    :param what: the flag's name, for error messages
    :return: the parsed mapping
    """
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not key.replace("_", "").replace(".", "").isalnum():
            raise UsageError(f"{what}: '{pair}' is not of the form key=value (e.g. {what} learning_rate=3e-4)")
        try:
            parsed[key] = load_yaml(value) if value.strip() else None
        except yaml.YAMLError as err:
            first = str(err).splitlines()[0]
            raise UsageError(f"{what}: the value of '{key}' is not valid YAML ({first}); quote it or fix it") from None
    return parsed
