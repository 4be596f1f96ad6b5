"""The four-rooms gridworld with one-time sub-goals, and its exact transition model."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.tabular import TabularMDP

UP = 0
DOWN = 1
LEFT = 2
RIGHT = 3

#: (row, col) change of each action.
MOVES = {UP: (-1, 0), DOWN: (1, 0), LEFT: (0, -1), RIGHT: (0, 1)}

LAYOUT = (
    "#############",
    "#     #     #",
    "#     #     #",
    "#           #",
    "#     #     #",
    "#     #     #",
    "## ####     #",
    "#     ### ###",
    "#     #     #",
    "#     #     #",
    "#           #",
    "#     #     #",
    "#############",
)

DEFAULT_START = (1, 1)
#: Where episodes start: ``cell`` (the ``start`` cell, no sub-goal collected) or ``uniform`` (any non-terminal state).
START_DISTRIBUTIONS = ("cell", "uniform")
DEFAULT_GOAL = (8, 11)
DEFAULT_GOAL_REWARD = 1.0
DEFAULT_SUBGOALS = ((7, 5, 0.2), (11, 1, 0.3))

CELL_PIXELS = 8
COLORS = {
    "wall": (60, 60, 60),
    "free": (235, 235, 235),
    "goal": (40, 170, 60),
    "subgoal": (235, 170, 20),
    "agent": (40, 80, 220),
}

Position = tuple[int, int]
Subgoal = tuple[int, int, float]


class FourRoomsEnv(gym.Env[np.ndarray, np.int64]):
    """
    The four-rooms gridworld (Sutton, Precup & Singh, 1999) with one-time sub-goals.

    ## Description
    A 13x13 grid of four rooms joined by four one-cell hallways: 104 free cells. The agent walks from the start to the
    goal; sub-goals pay a smaller reward the first time they are entered in an episode. The default layout (``A``
    start, ``G`` goal, ``s`` sub-goals):

    ```
    #############
    #A    #     #
    #     #     #
    #           #
    #     #     #
    #     #     #
    ## ####     #
    #    s### ###
    #     #    G#
    #     #     #
    #           #
    #s    #     #
    #############
    ```

    The sub-goals lie the long way round, so they pull a policy away from the shortest route, and following them is
    right. With ``gamma=0.99`` (values computed with :func:`envs.tabular.value_iteration`):

    - Shortest route, through the top-right room: 17 steps, ``V(start) = 0.99**16 = 0.8515``. This is ``V*(start)``
      with ``subgoals=[]``.
    - Optimal route, through the bottom-left room: 31 steps, collecting ``(7, 5)`` at step 10 and ``(11, 1)`` at
      step 18; ``V*(start) = 0.2 * 0.99**9 + 0.3 * 0.99**17 + 0.99**30 = 1.1753``. The optimal policy collects both
      sub-goals.
    - Collecting only ``(7, 5)`` (21 steps): 1.0006; only ``(11, 1)`` (25 steps): 1.0543.

    The shortest route and the two one-sub-goal routes are local optima: at every state such a deterministic policy
    visits, no action has a higher Q-value under that policy, so no change at a single state improves it, and policy
    gradients reach the better routes only through states the policy rarely visits. Undiscounted returns rank the
    four routes the same way (1.0, 1.2, 1.3, 1.5). A uniformly random policy reaches the goal within 200 steps in
    about 6% of episodes and collects each sub-goal in about 17-19%.

    ## Action Space
    `Discrete(4)`. Walking into a wall leaves the agent in place. With probability ``slip`` the action is replaced by
    one drawn uniformly from all four (possibly the same one).

    | Num | Action     |
    |-----|------------|
    | 0   | UP         |
    | 1   | DOWN       |
    | 2   | LEFT       |
    | 3   | RIGHT      |

    ## Observation Space
    `Box(0, 1, (104 + n_subgoals,), float32)`: a one-hot of the agent's cell, then one flag per sub-goal (1 = collected
    in this episode). Cells are the free cells in row-major order: ``cells[i]`` is the ``(row, col)`` of cell ``i``,
    ``cell_index[(row, col)]`` the index of a cell.

    ``info["state"]`` (in ``reset`` and ``step``) is the index of the augmented state in :meth:`transition_model`:
    ``state = mask * 104 + cell``, with ``mask = sum_i flag_i * 2**i``, so there are ``104 * 2**n_subgoals`` states
    (416 by default). The states ``mask * 104 + goal_cell`` are terminal, one per mask; their observation is the goal
    cell with the flags, exactly what ``step`` returns on reaching the goal. States with the agent on a sub-goal whose
    flag is 0 exist but are unreachable.

    ## Rewards
    ``goal_reward`` (default 1.0) on entering the goal; a sub-goal's reward on entering it for the first time in the
    episode; 0 otherwise.

    ## Starting State
    ``start_distribution="cell"`` (the default): cell ``start`` (default ``(1, 1)``, the top-left corner of the top-left
    room) with every flag 0. ``start_distribution="uniform"``: a state drawn uniformly (from ``self.np_random``) among
    the non-terminal states of :meth:`transition_model`, every cell but the goal with every combination of collected
    sub-goals, the model's ``initial`` then being that uniform distribution (the full-support start distribution of
    ``docs/exact_pg.md``'s ``rho = uniform``).

    ## Episode End
    Terminated on entering the goal (default ``(8, 11)``, in the bottom-right room). Truncated after
    ``max_episode_steps`` (200 from the registration; a ``TimeLimit`` wrapper). :meth:`transition_model` is the
    infinite-horizon discounted problem and ignores truncation.

    ## Arguments
    ```python
    import gymnasium as gym
    gym.make(
        "envs:FourRooms-v0",
        start=(1, 1),
        start_distribution="cell",
        goal=(8, 11),
        goal_reward=1.0,
        subgoals=[[7, 5, 0.2], [11, 1, 0.3]],
        slip=0.0,
        gamma=0.99,
        max_episode_steps=200,
        render_mode=None,
    )
    ```
    - ``start``, ``goal``: ``(row, col)`` of free cells of the 13x13 grid (row 0 is the top wall).
    - ``start_distribution``: ``"cell"`` (start on ``start``) or ``"uniform"`` (see Starting State).
    - ``goal_reward``: reward for reaching the goal.
    - ``subgoals``: a list of ``[row, col, reward]`` triples, or of ``{"position": [row, col], "reward": r}``
      mappings, at distinct free cells other than start and goal; ``[]`` turns sub-goals off (observation size 104).
      Each sub-goal doubles the number of states of :meth:`transition_model`.
    - ``slip``: probability in ``[0, 1]`` that a uniformly random action replaces the chosen one.
    - ``gamma``: discount of :meth:`transition_model`.
    - ``render_mode``: ``"ansi"`` (text: ``#`` wall, ``A`` agent, ``G`` goal, ``s`` sub-goal not yet collected) or
      ``"rgb_array"`` (a ``(104, 104, 3)`` uint8 image, 8 pixels per cell).

    ## Version History
    - v0: Initial version.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        start: Sequence[int] = DEFAULT_START,
        goal: Sequence[int] = DEFAULT_GOAL,
        goal_reward: float = DEFAULT_GOAL_REWARD,
        subgoals: Sequence[Sequence[float] | Mapping[str, Any]] = DEFAULT_SUBGOALS,
        slip: float = 0.0,
        gamma: float = 0.99,
        render_mode: str | None = None,
        start_distribution: str = "cell",
    ) -> None:
        self.walls = np.array([[char == "#" for char in row] for row in LAYOUT])
        self.cells = np.argwhere(~self.walls)
        self.n_cells = len(self.cells)
        self.cell_index = {(int(row), int(col)): i for i, (row, col) in enumerate(self.cells)}
        self.start = _parse_position(start, "start", self.cell_index)
        self.goal = _parse_position(goal, "goal", self.cell_index)
        self.subgoals = _parse_subgoals(subgoals, self.cell_index)
        _check_layout(self.start, self.goal, self.subgoals)
        self.goal_reward = _parse_real(goal_reward, "goal_reward")
        self.slip = _parse_real(slip, "slip", low=0.0, high=1.0)
        self.gamma = _parse_real(gamma, "gamma", low=0.0, high=1.0, high_open=True)
        if start_distribution not in START_DISTRIBUTIONS:
            raise ValueError(f"start_distribution must be one of {', '.join(START_DISTRIBUTIONS)}, got {start_distribution!r}")
        self.start_distribution = start_distribution
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode

        self.n_subgoals = len(self.subgoals)
        self.n_states = self.n_cells << self.n_subgoals
        self.next_cell = self._next_cell_table()
        self._build_step_tables()
        self.start_states = self._start_states()
        self.action_space = spaces.Discrete(len(MOVES))
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.n_cells + self.n_subgoals,), dtype=np.float32)
        self._cell = self._start_cell
        self._mask = 0

    def _build_step_tables(self) -> None:
        """Plain-Python lookup tables that keep :meth:`step` cheap."""
        self._next = tuple(tuple(int(cell) for cell in row) for row in self.next_cell)
        self._start_cell = self.cell_index[self.start]
        self._goal_cell = self.cell_index[self.goal]
        self._bit = [0] * self.n_cells
        self._bonus = [0.0] * self.n_cells
        for i, (row, col, reward) in enumerate(self.subgoals):
            self._bit[self.cell_index[(row, col)]] = 1 << i
            self._bonus[self.cell_index[(row, col)]] = reward
        self._flags = ((np.arange(1 << self.n_subgoals)[:, None] >> np.arange(self.n_subgoals)) & 1).astype(np.float32)
        self._blank = np.zeros(self.n_cells + self.n_subgoals, dtype=np.float32)

    def _start_states(self) -> np.ndarray:
        """:return: the augmented states an episode can start in, each as likely: the start cell with no flag, or every
        non-terminal state"""
        if self.start_distribution == "cell":
            return np.array([self._start_cell], dtype=np.int64)
        states = np.arange(self.n_states, dtype=np.int64)
        return states[states % self.n_cells != self._goal_cell]

    def _next_cell_table(self) -> np.ndarray:
        table = np.empty((self.n_cells, len(MOVES)), dtype=np.int64)
        for i, (row, col) in enumerate(self.cells):
            for action, (d_row, d_col) in MOVES.items():
                target = (int(row) + d_row, int(col) + d_col)
                table[i, action] = self.cell_index.get(target, i)
        return table

    @property
    def state(self) -> int:
        """Index of the current augmented state in :meth:`transition_model`."""
        return self._mask * self.n_cells + self._cell

    def collected_subgoals(self) -> list[int]:
        """
        Indices (into ``subgoals``) of the sub-goals collected in the current episode.

        :return: the indices, in increasing order.
        """
        return [i for i in range(self.n_subgoals) if self._mask >> i & 1]

    def _observation(self) -> np.ndarray:
        obs = self._blank.copy()
        obs[self._cell] = 1.0
        obs[self.n_cells :] = self._flags[self._mask]
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """
        Put the agent on the start cell with no sub-goal collected (``start_distribution="uniform"``: in a uniformly drawn
        non-terminal state).

        :param seed: seed of ``self.np_random``.
        :param options: unused.
        :return: observation and ``{"state": index}``.
        """
        super().reset(seed=seed)
        state = int(self.start_states[0] if len(self.start_states) == 1 else self.np_random.choice(self.start_states))
        self._mask, self._cell = divmod(state, self.n_cells)
        return self._observation(), {"state": self.state}

    def step(self, action: int | np.integer) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """
        Move one cell (or stay, against a wall), collect a sub-goal or reach the goal.

        :param action: one of ``UP, DOWN, LEFT, RIGHT``.
        :return: observation, reward, terminated, truncated (always ``False``), ``{"state": index}``.
        """
        move = int(action)
        if not 0 <= move < 4:
            raise ValueError(f"action must be in [0, 4), got {action!r}")
        if self.slip and self.np_random.random() < self.slip:
            move = int(self.np_random.integers(4))
        cell = self._next[self._cell][move]
        self._cell = cell
        reward = 0.0
        bit = self._bit[cell]
        if bit and not self._mask & bit:
            self._mask |= bit
            reward = self._bonus[cell]
        terminated = cell == self._goal_cell
        if terminated:
            reward += self.goal_reward
        return self._observation(), reward, terminated, False, {"state": self._mask * self.n_cells + cell}

    def transition_model(self) -> TabularMDP:
        """
        The exact model over augmented states ``mask * n_cells + cell``, slip included.

        :return: the MDP; terminal states are ``mask * n_cells + goal_cell`` for every mask.
        """
        next_state, rewards = self._move_outcomes()
        n_actions = len(MOVES)
        chance = (1.0 - self.slip) * np.eye(n_actions) + self.slip / n_actions
        P = np.zeros((self.n_states, n_actions, self.n_states))
        states, actions = np.arange(self.n_states)[:, None], np.arange(n_actions)[None]
        for move in range(n_actions):
            P[states, actions, next_state[:, move, None]] += chance[None, :, move]
        R = rewards @ chance.T
        terminal = np.zeros(self.n_states, dtype=bool)
        terminal[self._goal_cell :: self.n_cells] = True
        P[terminal] = 0.0
        P[terminal, :, terminal] = 1.0
        R[terminal] = 0.0
        initial = np.zeros(self.n_states)
        initial[self.start_states] = 1.0 / len(self.start_states)
        return TabularMDP(P=P, R=R, terminal=terminal, initial=initial, gamma=self.gamma)

    def _move_outcomes(self) -> tuple[np.ndarray, np.ndarray]:
        """Next state and reward of every state and move when the move is carried out: two ``(S, 4)`` arrays."""
        masks = np.arange(1 << self.n_subgoals)[:, None, None]
        landing = self.next_cell[None]
        bits = np.asarray(self._bit)[landing]
        bonus = np.where(bits & ~masks, np.asarray(self._bonus)[landing], 0.0)
        rewards = bonus + self.goal_reward * (landing == self._goal_cell)
        next_state = (masks | bits) * self.n_cells + landing
        return next_state.reshape(self.n_states, -1), rewards.reshape(self.n_states, -1)

    def observations(self) -> np.ndarray:
        """
        The observation of every state of :meth:`transition_model`, row ``s`` for state ``s``.

        :return: ``(n_states, n_cells + n_subgoals)`` float32 array.
        """
        obs = np.zeros((self.n_states, self.n_cells + self.n_subgoals), dtype=np.float32)
        states = np.arange(self.n_states)
        obs[states, states % self.n_cells] = 1.0
        obs[:, self.n_cells :] = np.repeat(self._flags, self.n_cells, axis=0)
        return obs

    def render(self) -> str | np.ndarray | None:
        """
        Draw the grid: text for ``"ansi"``, a ``(13 * 8, 13 * 8, 3)`` uint8 image for ``"rgb_array"``.

        :return: the drawing, or ``None`` without a render mode.
        """
        if self.render_mode is None:
            gym.logger.warn("render() was called without a render_mode; pass render_mode='ansi' or 'rgb_array'")
            return None
        grid = self._symbols()
        if self.render_mode == "ansi":
            return "\n".join("".join(row) for row in grid) + "\n"
        colors = {"#": "wall", " ": "free", "G": "goal", "s": "subgoal", "A": "agent"}
        palette = np.array([COLORS[colors[char]] for char in grid.ravel()], dtype=np.uint8).reshape(*grid.shape, 3)
        return np.repeat(np.repeat(palette, CELL_PIXELS, axis=0), CELL_PIXELS, axis=1)

    def _symbols(self) -> np.ndarray:
        grid = np.where(self.walls, "#", " ")
        grid[self.goal] = "G"
        for i, (row, col, _) in enumerate(self.subgoals):
            if not self._mask >> i & 1:
                grid[row, col] = "s"
        grid[tuple(self.cells[self._cell])] = "A"
        return grid


def _parse_real(value: Any, name: str, low: float = -math.inf, high: float = math.inf, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not low <= value <= high or (high_open and value == high):
        raise ValueError(f"{name} must be in [{low:g}, {high:g}{')' if high_open else ']'}, got {value!r}")
    return float(value)


def _parse_position(value: Any, name: str, cell_index: Mapping[Position, int]) -> Position:
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence | np.ndarray)
        or len(value) != 2
        or not all(isinstance(v, Integral) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"{name} must be a (row, col) pair of integers, got {value!r}")
    position = (int(value[0]), int(value[1]))
    if position not in cell_index:
        raise ValueError(f"{name} {position} is not a free cell of the 13x13 grid (a wall or outside it)")
    return position


def _parse_subgoals(value: Any, cell_index: Mapping[Position, int]) -> tuple[Subgoal, ...]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise ValueError(f"subgoals must be a list of [row, col, reward] triples, got {value!r}")
    parsed = []
    for i, item in enumerate(value):
        if isinstance(item, Mapping):
            if set(item) != {"position", "reward"}:
                raise ValueError(f"subgoal {i} must have exactly the keys 'position' and 'reward', got {item!r}")
            position, reward = item["position"], item["reward"]
        elif isinstance(item, Sequence | np.ndarray) and not isinstance(item, (str, bytes)) and len(item) == 3:
            position, reward = item[:2], item[2]
        else:
            raise ValueError(f"subgoal {i} must be a [row, col, reward] triple, got {item!r}")
        row, col = _parse_position(position, f"subgoal {i} position", cell_index)
        parsed.append((row, col, _parse_real(reward, f"subgoal {i} reward")))
    return tuple(parsed)


def _check_layout(start: Position, goal: Position, subgoals: Sequence[Subgoal]) -> None:
    positions = [(row, col) for row, col, _ in subgoals]
    if len(set(positions)) != len(positions):
        raise ValueError(f"subgoal positions must be distinct, got {positions}")
    if start == goal:
        raise ValueError(f"start and goal must differ, both are {start}")
    for name, position in (("start", start), ("goal", goal)):
        if position in positions:
            raise ValueError(f"{name} {position} must not be a subgoal position")
