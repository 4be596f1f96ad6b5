"""A K-armed bandit as a one-step episodic environment, and its exact transition model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.tabular import TabularMDP

DECISION = 0
TERMINAL = 1

DEFAULT_REWARDS = (1.0, 0.9, 0.1)


class BanditEnv(gym.Env[np.ndarray, np.int64]):
    """
    A K-armed bandit: one decision, then the episode ends.

    ## Description
    The agent pulls one of ``K`` arms and receives that arm's reward. The default arms are ``[1.0, 0.9, 0.1]``: an
    optimal arm, a close sub-optimal one (a gap of 0.1, where a policy that settles on it is hard to move) and a bad
    one. With ``noise > 0`` each pull adds zero-mean Gaussian noise, so the expected rewards stay the same.

    ## Action Space
    `Discrete(K)`: the index of the arm to pull.

    | Num | Action               | Reward (default) |
    |-----|----------------------|------------------|
    | 0   | pull arm 0 (optimal) | 1.0              |
    | 1   | pull arm 1           | 0.9              |
    | 2   | pull arm 2           | 0.1              |

    ## Observation Space
    `Box(0, 1, (1,), float32)`: ``[0.0]`` in the decision state, ``[1.0]`` after the pull.

    ## Rewards
    ``rewards[a] + noise * N(0, 1)`` for pulling arm ``a``.

    ## Starting State
    The decision state; ``info["state"]`` is ``0`` after ``reset`` and ``1`` after ``step``, the indices of
    :meth:`transition_model` (state 0 decides, state 1 is terminal).

    ## Episode End
    Terminated after the single pull.

    ## Arguments
    ```python
    import gymnasium as gym
    gym.make("envs:Bandit-v0", rewards=[1.0, 0.9, 0.1], noise=0.0, gamma=0.99)
    ```
    - ``rewards``: expected reward of each arm (at least one arm).
    - ``noise``: standard deviation of the Gaussian reward noise (default 0: deterministic).
    - ``gamma``: discount of :meth:`transition_model` (it does not change the one-step returns).
    - ``render_mode``: ``"ansi"`` (text), ``"rgb_array"`` (one bar per arm, its height the reward, the last pull in blue) or
      ``None``.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        rewards: Sequence[float] = DEFAULT_REWARDS,
        noise: float = 0.0,
        gamma: float = 0.99,
        render_mode: str | None = None,
    ) -> None:
        self.rewards = _parse_rewards(rewards)
        self.noise = _parse_real(noise, "noise")
        self.gamma = _parse_real(gamma, "gamma")
        if self.noise < 0:
            raise ValueError(f"noise must be a standard deviation >= 0, got {noise}")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma must be in [0, 1), got {gamma}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.n_arms = len(self.rewards)
        self.action_space = spaces.Discrete(self.n_arms)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self._state = DECISION
        self._last: tuple[int, float] | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """
        Return to the decision state.

        :param seed: seed of ``self.np_random``.
        :param options: unused.
        :return: observation ``[0.0]`` and ``{"state": 0}``.
        """
        super().reset(seed=seed)
        self._state = DECISION
        self._last = None
        return self._observation(), {"state": DECISION}

    def step(self, action: int | np.integer) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """
        Pull an arm.

        :param action: arm index.
        :return: observation ``[1.0]``, the reward, ``terminated=True``, ``truncated=False``, ``{"state": 1}``.
        """
        arm = int(action)
        if not 0 <= arm < self.n_arms:
            raise ValueError(f"action must be an arm index in [0, {self.n_arms}), got {action!r}")
        if self._state == TERMINAL:
            raise RuntimeError("the episode has ended; call reset() before step()")
        reward = self.rewards[arm]
        if self.noise:
            reward += self.noise * float(self.np_random.standard_normal())
        self._state = TERMINAL
        self._last = (arm, reward)
        return self._observation(), reward, True, False, {"state": TERMINAL}

    def sample_rewards(self, actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """
        The rewards of many pulls at once, with the law of :meth:`step`: ``rewards[a] + noise * N(0, 1)`` each.

        It leaves the env's state and ``self.np_random`` alone: the noise comes from ``rng``.

        :param actions: arm indices, any shape.
        :param rng: the generator of the noise.
        :return: float64 rewards, the shape of ``actions``.
        """
        arms = np.asarray(actions, dtype=np.int64)
        if arms.size and (arms.min() < 0 or arms.max() >= self.n_arms):
            raise ValueError(
                f"actions must be arm indices in [0, {self.n_arms}), got values from {arms.min()} to {arms.max()}"
            )
        rewards = np.asarray(self.rewards)[arms]
        if self.noise:
            rewards = rewards + self.noise * rng.standard_normal(arms.shape)
        return rewards

    def _observation(self) -> np.ndarray:
        return np.full(1, self._state, dtype=np.float32)

    def transition_model(self) -> TabularMDP:
        """
        The exact model: state 0 decides, every arm leads to the terminal state 1.

        :return: the MDP with ``R[0, a] = rewards[a]``.
        """
        P = np.zeros((2, self.n_arms, 2))
        P[:, :, TERMINAL] = 1.0
        R = np.zeros((2, self.n_arms))
        R[DECISION] = self.rewards
        return TabularMDP(P=P, R=R, terminal=np.array([False, True]), initial=np.array([1.0, 0.0]), gamma=self.gamma)

    def observations(self) -> np.ndarray:
        """
        The observation of each state of :meth:`transition_model`.

        :return: ``[[0.0], [1.0]]`` as float32.
        """
        return np.array([[DECISION], [TERMINAL]], dtype=np.float32)

    def render(self) -> str | np.ndarray | None:
        """
        Describe the arms and the last pull.

        :return: the text for ``"ansi"``, a uint8 image for ``"rgb_array"``, else ``None``.
        """
        if self.render_mode is None:
            gym.logger.warn("render() was called without a render_mode; pass render_mode='ansi' or 'rgb_array'")
            return None
        if self.render_mode == "rgb_array":
            return self._render_rgb()
        arms = " ".join(f"[{i}: {r:g}]" for i, r in enumerate(self.rewards))
        last = "no pull yet" if self._last is None else f"pulled {self._last[0]}, reward {self._last[1]:g}"
        return f"{arms}  {last}\n"

    def _render_rgb(self, height: int = 32, width: int = 8) -> np.ndarray:
        image = np.full((height, width * len(self.rewards), 3), 235, dtype=np.uint8)
        low, high = min(0.0, *self.rewards), max(1e-12, *self.rewards)
        for arm, reward in enumerate(self.rewards):
            bar = int(round((reward - low) / (high - low) * (height - 2)))
            color = (40, 80, 220) if self._last is not None and self._last[0] == arm else (60, 60, 60)
            image[height - bar :, arm * width + 1 : (arm + 1) * width - 1] = color
        return image


def _parse_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _parse_rewards(value: Any) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray) or len(value) == 0:
        raise ValueError(f"rewards must be a non-empty list of numbers (one per arm), got {value!r}")
    return tuple(_parse_real(r, f"rewards[{i}]") for i, r in enumerate(value))
