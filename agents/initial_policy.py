"""Start an SB3 actor at a given policy: the adversarial start of :class:`agents.ExactPG` for PPO, A2C and QAC.

The actor is fitted to the target policy ``q(.|s)`` on the observation of every non-terminal state of the env's
transition model (terminal states are left out: no action taken there changes a return). The fit is a regression in
the coordinates of the policy's own action distribution (``get_distribution(obs)``), each the parameters that give
``q`` under it:

- softmax and NeuRD (``CategoricalDistribution``): the centred log-probabilities ``log pi(.|s) - mean log pi(.|s)``
  against ``log q - mean log q``;
- escort (``policies.EscortDistribution``): ``theta(s)`` against ``q^(1/p) / max_a q(a|s)^(1/p)``, so ``max_a theta``
  stays near 1, the scale of the near-uniform start (escort's step size depends on the scale of ``theta``).

The loss ``1/n sum_s ||c(s) - c_q(s)||^2`` is minimised by variable projection: before every step the action head (the
last linear layer) is set to its exact least-squares solution on the current features, then Adam moves the other
actor layers; on FourRooms-v0 that takes 80 to 300 steps. The cross-entropy ``KL(q || pi)`` is a poor loss for this
target: under softmax its gradient on the logit of ``a*`` is ``pi(a*|s) - q(a*|s)``, of the order of ``pi0`` (softmax
damping), and under escort Adam's steps move the small ``theta`` of ``a*`` and of the other actions by more than their
size. Full-batch Adam on it (step sizes 1e-3 to 1e-2) needs about 2,800 steps for escort at ``pi0 = 0.1`` and does not
reach the tolerance within 3,000 for escort at ``pi0 <= 0.01`` nor for softmax at ``pi0 = 0.001``. The fit stops when
:class:`FitTolerance` holds in every fitted state.

Only parameters that no critic path uses move (the policy MLP and the action head; a features extractor shared with the
critic stays), the fit has its own optimizer (the algorithm's optimizer and its state are untouched), and it takes no
environment step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.distributions import CategoricalDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecEnv, unwrap_vec_normalize
from torch import nn

from agents.exact_mdp import as_mdp
from agents.exact_pg import ExactPG
from policies.distributions import EscortDistribution

#: Modules of an SB3 actor-critic policy that belong to a critic: SB3's value path and QAC's Q path and its target.
CRITIC_MODULES = ("vf_features_extractor", "value_net", "q_net", "critic_target")

PI0_MAX = 0.3
"""Largest ``pi0`` of the adversarial start; it also has to stay below the mass ``1 - pi0 - (A - 2) pi0^2`` left to the
sub-optimal action (:func:`check_pi0`), which every ``pi0 <= 0.3`` does with up to 6 actions."""


@dataclass(frozen=True)
class FitTolerance:
    """
    When a fitted actor counts as starting at its target: in every fitted state,
    ``|log pi(a*|s) - log q(a*|s)| <= log_pi_star`` and ``1/2 sum_a |pi(a|s) - q(a|s)| <= total_variation``.

    :param log_pi_star: Largest error of ``log pi(a*|s)``
    :param total_variation: Largest total variation distance to the target
    """

    log_pi_star: float = 0.05
    total_variation: float = 0.01


@dataclass(frozen=True)
class StartTarget:
    """
    A target policy on the states to fit.

    :param observations: ``(n, *obs_shape)`` the observation of each state, as the policy sees it
    :param policy: ``(n, A)`` the target ``q(.|s)``, every entry > 0
    :param best_actions: ``(n,)`` the action ``a*`` whose log-probability the tolerance checks
    """

    observations: np.ndarray
    policy: np.ndarray
    best_actions: np.ndarray


@dataclass(frozen=True)
class FitReport:
    """
    How close the fitted actor starts to its target.

    :param pi_star: ``(n,)`` the fitted ``pi(a*|s)`` in every fitted state
    :param log_error: Largest ``|log pi(a*|s) - log q(a*|s)|``
    :param total_variation: Largest total variation distance to the target
    :param steps: Adam steps taken
    :param wall_time: Seconds the fit took
    """

    pi_star: np.ndarray
    log_error: float
    total_variation: float
    steps: int
    wall_time: float

    def summary(self) -> dict[str, float]:
        """:return: ``initial_pi_star_median/min/max``, ``initial_log_error_max``, ``initial_tv_max``,
        ``initial_fit_steps`` and ``initial_fit_time`` (seconds), for a run's ``summary.json``"""
        return {
            "initial_pi_star_median": float(np.median(self.pi_star)),
            "initial_pi_star_min": float(self.pi_star.min()),
            "initial_pi_star_max": float(self.pi_star.max()),
            "initial_log_error_max": self.log_error,
            "initial_tv_max": self.total_variation,
            "initial_fit_steps": self.steps,
            "initial_fit_time": self.wall_time,
        }


class StartFitError(ValueError):
    """The actor could not be fitted to its target within the tolerance."""


@dataclass(frozen=True)
class Coordinates:
    """
    Where a distribution is fitted: its coordinates, and the coordinates that give a target policy.

    :param read: The coordinates of a distribution, ``(n, A)``, differentiable
    :param target: The coordinates of the target ``q`` (``(n, A)``) under the same kind of distribution
    """

    read: Callable[[CategoricalDistribution], th.Tensor]
    target: Callable[[CategoricalDistribution, th.Tensor], th.Tensor]


def _centred(x: th.Tensor) -> th.Tensor:
    return x - x.mean(dim=-1, keepdim=True)


def _escort_target(dist: CategoricalDistribution, q: th.Tensor) -> th.Tensor:
    assert isinstance(dist, EscortDistribution)
    theta = q ** (1.0 / dist.p)
    return theta / theta.amax(dim=-1, keepdim=True)


#: Coordinates by distribution class (looked up along the class's MRO: a subclass of ``EscortDistribution`` is escort).
COORDINATES: dict[type, Coordinates] = {
    EscortDistribution: Coordinates(read=lambda dist: dist.theta, target=_escort_target),  # type: ignore[attr-defined]
    CategoricalDistribution: Coordinates(
        read=lambda dist: _centred(dist.distribution.logits), target=lambda dist, q: _centred(th.log(q))
    ),
}


def coordinates_of(dist: CategoricalDistribution) -> Coordinates:
    """:param dist: an action distribution
    :return: its entry of ``COORDINATES``
    :raises ValueError: for a distribution that is not categorical"""
    for cls in type(dist).__mro__:
        if cls in COORDINATES:
            return COORDINATES[cls]
    raise ValueError(f"cannot fit a {type(dist).__name__} to a start policy: it needs a categorical distribution")


def check_pi0(pi0: float, n_actions: int) -> None:
    """
    :param pi0: ``pi(a*|s)`` of the adversarial start
    :param n_actions: number of actions
    :raises ValueError: unless ``pi0`` is in ``(0, PI0_MAX]`` and below the mass ``1 - pi0 - (n_actions - 2) pi0^2``
        left to the sub-optimal action (for 2 or more actions)
    """
    if not (np.isfinite(pi0) and 0.0 < pi0 <= PI0_MAX):
        raise ValueError(f"pi0 must be in (0, {PI0_MAX:g}], got {pi0!r}")
    if n_actions < 2:
        raise ValueError("the adversarial start needs at least 2 actions")
    if 1.0 - pi0 - (n_actions - 2) * pi0**2 <= pi0:
        # the largest pi0 with (A - 2) pi0^2 + 2 pi0 - 1 < 0
        bound = (np.sqrt(n_actions - 1.0) - 1.0) / (n_actions - 2)
        raise ValueError(
            f"pi0 = {pi0:g} leaves the sub-optimal action less than pi0 with {n_actions} actions; use pi0 < {bound:.3g}"
        )


def adversarial_target(env: gym.Env, pi0: float) -> StartTarget:
    """
    The adversarial start of :meth:`agents.ExactPG.initial_policy` on the non-terminal states of a tabular env:
    ``pi0`` on ``a* = argmax Q*``, ``pi0^2`` on each other action but one, the rest on the best sub-optimal action.

    :param env: an env whose ``unwrapped`` has ``transition_model()`` and ``observations()`` (one per model state)
    :param pi0: ``pi(a*|s)`` of the start, in ``(0, PI0_MAX]``
    :return: the target on the non-terminal states, with the env's observations
    :raises ValueError: if the env has no transition model, or ``pi0`` is out of range or too large for its actions
    """
    mdp = as_mdp(env)
    check_pi0(pi0, mdp.n_actions)
    agent = ExactPG(mdp, init="adversarial", pi0=pi0)
    live = ~mdp.terminal
    observations = np.asarray(env.unwrapped.observations())[live]
    return StartTarget(observations, agent.initial_policy()[live], agent.optimal_actions[live])


def actor_parameters(policy: ActorCriticPolicy) -> list[nn.Parameter]:
    """
    :param policy: an SB3 actor-critic policy (``ActorCriticPolicy`` or ``agents.qac_policy.QACPolicy``)
    :return: its trainable parameters that no critic module holds (``CRITIC_MODULES`` and the MLP extractor's
        ``value_net``): what may move without changing a critic (a shared features extractor is the critic's too)
    """
    modules = [getattr(policy, name) for name in CRITIC_MODULES if hasattr(policy, name)] + [policy.mlp_extractor.value_net]
    critic = {id(param) for module in modules for param in module.parameters()}
    return [param for param in policy.parameters() if param.requires_grad and id(param) not in critic]


def fit_actor(
    policy: ActorCriticPolicy,
    target: StartTarget,
    tolerance: FitTolerance = FitTolerance(),
    learning_rate: float = 1e-2,
    max_steps: int = 2000,
) -> FitReport:
    """
    Fit the actor to ``target`` (see the module docstring) until ``tolerance`` holds in every state of the target.

    :param policy: the SB3 policy, whose ``action_net`` is a linear layer; only :func:`actor_parameters` change
    :param target: the target policy, with the observations the policy sees
    :param tolerance: when to stop
    :param learning_rate: Adam's step size on the actor layers below the action head
    :param max_steps: most Adam steps
    :return: the report of the fitted actor
    :raises StartFitError: if the tolerance does not hold after ``max_steps`` steps
    """
    start = time.perf_counter()
    head = policy.action_net
    if not isinstance(head, nn.Linear):
        raise ValueError(f"the actor's action_net must be a linear layer to fit a start policy, got {type(head).__name__}")
    obs, _ = policy.obs_to_tensor(target.observations)
    q = th.as_tensor(target.policy, dtype=th.float32, device=policy.device)
    rows = th.arange(len(q), device=policy.device)
    best = th.as_tensor(target.best_actions, device=policy.device)
    log_q_best = th.log(q[rows, best])
    first = policy.get_distribution(obs)
    coordinates = coordinates_of(first)
    goal = coordinates.target(first, q).detach()
    head_params = {id(param) for param in head.parameters()}
    body = [param for param in actor_parameters(policy) if id(param) not in head_params]
    optimizer = th.optim.Adam(body, lr=learning_rate) if body else None
    for step in range(max_steps + 1):
        _solve_head(policy, obs, goal)
        dist = policy.get_distribution(obs)
        log_pi = dist.distribution.logits  # normalised log-probabilities
        log_error = (log_pi[rows, best] - log_q_best).abs().max().item()
        total_variation = 0.5 * (log_pi.exp() - q).abs().sum(dim=1).max().item()
        if log_error <= tolerance.log_pi_star and total_variation <= tolerance.total_variation:
            break
        if step == max_steps or optimizer is None:
            raise StartFitError(
                f"the actor did not reach its start policy within {step} Adam steps (largest |log pi(a*|s) - log pi0| "
                f"{log_error:.3g}, tolerance {tolerance.log_pi_star}; largest total variation {total_variation:.3g}, "
                f"tolerance {tolerance.total_variation}): give the actor a larger network or use a larger pi0"
            )
        # squared error in the distribution's coordinates, the head at its least-squares optimum
        loss = (coordinates.read(dist) - goal).square().sum(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for param in policy.parameters():
        param.grad = None
    pi_star = log_pi[rows, best].exp().detach().cpu().numpy()
    return FitReport(pi_star, log_error, total_variation, step, time.perf_counter() - start)


def _solve_head(policy: ActorCriticPolicy, obs: th.Tensor, goal: th.Tensor) -> None:
    """Set the action head to the least-squares fit of ``goal`` on the current actor features (and a constant)."""
    head = policy.action_net
    with th.no_grad():
        latent = policy.mlp_extractor.forward_actor(policy.extract_features(obs, policy.pi_features_extractor))
        design = th.cat([latent, th.ones_like(latent[:, :1])], dim=1).double().cpu()
        solution = least_squares(design, goal.double().cpu()).to(head.weight)
        head.weight.copy_(solution[:-1].T)
        head.bias.copy_(solution[-1])


def least_squares(design: th.Tensor, goal: th.Tensor, ridge: float = 1e-10) -> th.Tensor:
    """
    The least-squares solution of ``design @ x = goal`` (float64), checked against the normal equations.

    First by the normal equations with a tiny ridge (``ridge`` times the mean diagonal of ``design^T design``, so that
    rank-deficient designs, e.g. a single state, get the minimum-norm-like solution), then, if that answer fails the
    check, by LAPACK's ``lstsq``: an answer that fails the check (an all-zero one was seen once in a long test process)
    is never used.

    :param design: ``(n, k)``
    :param goal: ``(n, m)``
    :param ridge: relative ridge of the normal equations
    :return: ``(k, m)``
    :raises StartFitError: if no answer passes the check
    """
    gram = design.T @ design
    rhs = design.T @ goal
    damping = ridge * max(float(gram.diagonal().mean()), 1e-300)
    tolerance = 1e-6 * max(float(gram.abs().max()), 1.0) * max(float(goal.abs().max()), 1.0)
    solvers = (
        lambda: th.linalg.solve(gram + damping * th.eye(len(gram), dtype=gram.dtype), rhs),
        lambda: th.linalg.lstsq(design, goal).solution,
    )
    for solve in solvers:
        solution = solve()
        if bool(th.isfinite(solution).all()) and float((gram @ solution - rhs).abs().max()) <= tolerance:
            return solution
    raise StartFitError("the least-squares fit of the action head failed: no solver passed the normal-equation check")


def adversarial_start(model: BaseAlgorithm, env: gym.Env, pi0: float, vec_env: VecEnv | None = None) -> FitReport:
    """
    Start ``model``'s actor at the adversarial policy of ``env`` (see :func:`adversarial_target`), before training.

    :param model: an SB3 actor-critic algorithm (PPO, A2C, QAC), untrained
    :param env: the tabular env the model is trained on (made with the same env kwargs)
    :param pi0: ``pi(a*|s)`` of the start
    :param vec_env: the model's training env: where it normalises observations (``VecNormalize``), the fit sees them
        normalised with its current statistics, as the policy does
    :return: the report of the fit
    :raises ValueError: if the env has no transition model, ``pi0`` does not fit it, the policy does not see the env's
        own observations (frame stacking), or the fit fails (:class:`StartFitError`)
    """
    target = adversarial_target(env, pi0)
    shape = model.policy.observation_space.shape
    if target.observations.shape[1:] != shape:
        raise ValueError(
            f"the adversarial start needs the policy to see the env's own observations, of shape "
            f"{target.observations.shape[1:]}, not {shape} (frame stacking?)"
        )
    normalize = unwrap_vec_normalize(vec_env) if vec_env is not None else None
    if normalize is not None:
        target = StartTarget(np.asarray(normalize.normalize_obs(target.observations)), target.policy, target.best_actions)
    return fit_actor(model.policy, target)
