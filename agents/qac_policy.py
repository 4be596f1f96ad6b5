"""Actor-critic policies for QAC: an actor head under softmax, escort or NeuRD, and a critic head Q(s, .)."""

from copy import deepcopy
from functools import partial
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import CategoricalDistribution
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from policies.actor_critic import ESCORT_HEAD_BIAS, ESCORT_HEAD_GAIN
from policies.distributions import DEFAULT_EPS, EscortDistribution, check_escort_params

PARAMETERIZATIONS = ("softmax", "escort", "neurd")


class CriticTarget(nn.Module):
    """
    A frozen copy of the critic path (features extractor, critic MLP, Q head), moved towards the online
    critic by Polyak averaging.

    :param features_extractor: The critic's features extractor (copied)
    :param latent_net: The critic's MLP (copied)
    :param q_net: The Q head (copied)
    """

    def __init__(self, features_extractor: nn.Module, latent_net: nn.Module, q_net: nn.Module):
        super().__init__()
        self.features_extractor = deepcopy(features_extractor)
        self.latent_net = deepcopy(latent_net)
        self.q_net = deepcopy(q_net)
        self.requires_grad_(False)


class DuelingQHead(nn.Module):
    """
    A dueling Q head (Wang et al., 2016): ``Q(s, a) = V(s) + A(s, a)`` with mean-zero advantages,
    ``A(s, a) = h_a(s) - mean_b h_b(s)``. Every sample of ``Q(s, a_t)`` moves ``V(s)``, the part shared by all actions,
    so the small differences between actions are learned on top of a state value fitted from every step.

    :param latent_dim: Size of the critic latent
    :param n_actions: Number of actions
    """

    def __init__(self, latent_dim: int, n_actions: int):
        super().__init__()
        self.value = nn.Linear(latent_dim, 1)
        self.advantage = nn.Linear(latent_dim, n_actions)

    def decompose(self, latent: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """
        :param latent: Critic latent
        :return: ``V(s)`` of shape (batch, 1) and the mean-zero ``A(s, .)`` of shape (batch, n_actions)
        """
        advantage = self.advantage(latent)
        return self.value(latent), advantage - advantage.mean(dim=-1, keepdim=True)

    def forward(self, latent: th.Tensor) -> th.Tensor:
        """
        :param latent: Critic latent
        :return: ``Q(s, .) = V(s) + A(s, .)``, shape (batch, n_actions)
        """
        value, advantage = self.decompose(latent)
        return value + advantage


class QACPolicy(ActorCriticPolicy):
    """
    Actor-critic policy for QAC on a ``Discrete`` action space. The actor head's output ``h(s)`` gives

    - ``softmax``: ``pi(a|s) = exp(z_a) / sum_b exp(z_b)`` with ``z = h(s)``;
    - ``escort``:  ``pi(a|s) = |theta_a|^p / sum_b |theta_b|^p`` with ``theta = h(s)`` (``policies.EscortDistribution``);
    - ``neurd``:   the softmax of the mean-centred logits ``z = h(s) - mean_a h_a(s)``, which QAC updates with the
      NeuRD rule instead of the policy gradient.

    The critic head outputs ``Q(s, a)`` for every action, on the same features; the state value is
    ``V(s) = sum_a pi(a|s) Q(s, a)`` (``forward``, ``evaluate_actions``). ``critic_target`` is a slowly updated copy of
    the critic path for TD targets, and ``predict_values``, the value SB3 bootstraps truncated episodes with, is its
    ``V_target(s) = sum_a pi(a|s) Q_target(s, a)``: every bootstrap of QAC's targets comes from the target critic.

    Takes every argument of SB3's ``ActorCriticPolicy``, plus:

    :param observation_space: Observation space
    :param action_space: Action space; must be ``Discrete``
    :param lr_schedule: Learning rate schedule
    :param args: Positional arguments of ``ActorCriticPolicy`` after ``lr_schedule``
    :param parameterization: ``softmax``, ``escort`` or ``neurd``
    :param escort_p: Escort power ``p`` > 0 (used by ``escort`` only)
    :param escort_eps: Relative floor ``f`` in (0, 1) of ``|theta| / max_b |theta_b|`` (see ``policies.escort_logits``)
    :param dueling: Whether the Q head is a :class:`DuelingQHead` rather than one linear layer
    :param kwargs: Keyword arguments of ``ActorCriticPolicy``
    """

    q_net: nn.Linear | DuelingQHead
    critic_target: CriticTarget

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        *args: Any,
        parameterization: str = "softmax",
        escort_p: float = 2.0,
        escort_eps: float = DEFAULT_EPS,
        dueling: bool = False,
        **kwargs: Any,
    ):
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"{type(self).__name__} needs a Discrete action space, got {action_space}")
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {', '.join(PARAMETERIZATIONS)}, got {parameterization!r}")
        check_escort_params(escort_p, escort_eps)
        self.parameterization = parameterization
        self.escort_p = escort_p
        self.escort_eps = escort_eps
        self.dueling = dueling
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)

    @property
    def n_actions(self) -> int:
        """Number of discrete actions."""
        assert isinstance(self.action_space, spaces.Discrete)
        return int(self.action_space.n)

    def _build(self, lr_schedule: Schedule) -> None:
        """
        Create the actor and Q heads on SB3's MLP extractor, initialise them, copy the critic path into
        ``critic_target``, and create the optimizer over every parameter except the target's.

        :param lr_schedule: Learning rate schedule; ``lr_schedule(1)`` is the initial learning rate
        """
        if self.parameterization == "escort":
            self.action_dist = EscortDistribution(self.n_actions, p=self.escort_p, eps=self.escort_eps)
        else:
            self.action_dist = CategoricalDistribution(self.n_actions)
        self._build_mlp_extractor()
        self.action_net = self.action_dist.proba_distribution_net(latent_dim=self.mlp_extractor.latent_dim_pi)
        q_head = DuelingQHead if self.dueling else nn.Linear
        self.q_net = q_head(self.mlp_extractor.latent_dim_vf, self.n_actions)
        self._init_weights()
        self.critic_target = CriticTarget(self.vf_features_extractor, self.mlp_extractor.value_net, self.q_net)
        trainable = [param for param in self.parameters() if param.requires_grad]
        self.optimizer = self.optimizer_class(trainable, lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _init_weights(self) -> None:
        """
        With ``ortho_init``: SB3's orthogonal init (features and MLP sqrt(2), actor head 0.01) and a Q head of gain 0.01,
        so that an untrained critic gives advantages near 0 rather than random ones for the actor to chase. Escort's
        near-uniform head in any case (as ``policies.EscortActorCriticPolicy``): ``theta(s) = 1 + W h(s)``, ``W``
        orthogonal of gain ``0.01 / p``.
        """
        if self.ortho_init:
            module_gains: dict[nn.Module, float] = {self.mlp_extractor: np.sqrt(2), self.action_net: 0.01, self.q_net: 0.01}
            for extractor in {self.pi_features_extractor, self.vf_features_extractor}:
                module_gains[extractor] = np.sqrt(2)
            for module, gain in module_gains.items():
                module.apply(partial(self.init_weights, gain=gain))
        if self.parameterization == "escort":
            assert isinstance(self.action_net, nn.Linear)
            nn.init.orthogonal_(self.action_net.weight, gain=ESCORT_HEAD_GAIN / self.escort_p)
            nn.init.constant_(self.action_net.bias, ESCORT_HEAD_BIAS)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            parameterization=self.parameterization, escort_p=self.escort_p, escort_eps=self.escort_eps, dueling=self.dueling
        )
        return data

    def actor_head(self, latent_pi: th.Tensor) -> th.Tensor:
        """
        :param latent_pi: Actor latent
        :return: The actor head's output: logits (mean-centred for ``neurd``) or escort ``theta``
        """
        head = self.action_net(latent_pi)
        if self.parameterization == "neurd":
            head = head - head.mean(dim=-1, keepdim=True)
        return head

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> CategoricalDistribution:
        return self.action_dist.proba_distribution(action_logits=self.actor_head(latent_pi))

    def _latents(self, obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor]:
        features = self.extract_features(obs)
        if self.share_features_extractor:
            return self.mlp_extractor(features)
        pi_features, vf_features = features
        return self.mlp_extractor.forward_actor(pi_features), self.mlp_extractor.forward_critic(vf_features)

    def evaluate_all(self, obs: PyTorchObs) -> tuple[th.Tensor, CategoricalDistribution, th.Tensor]:
        """
        One pass through both heads.

        :param obs: Observation
        :return: The actor head's output (see :meth:`actor_head`), the action distribution, and ``Q(s, .)``
            of shape (batch, n_actions)
        """
        latent_pi, latent_vf = self._latents(obs)
        head = self.actor_head(latent_pi)
        return head, self.action_dist.proba_distribution(action_logits=head), self.q_net(latent_vf)

    def forward(self, obs: th.Tensor, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """
        :param obs: Observation
        :param deterministic: Whether to take the most likely action instead of sampling
        :return: Action, ``V(s) = sum_a pi(a|s) Q(s, a)`` of shape (batch, 1), and the action's log probability
        """
        _, distribution, q_values = self.evaluate_all(obs)
        actions = distribution.get_actions(deterministic=deterministic)
        values = expected_value(distribution, q_values)
        return actions.reshape((-1, *self.action_space.shape)), values, distribution.log_prob(actions)  # type: ignore[misc]

    def evaluate_actions(self, obs: PyTorchObs, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """
        :param obs: Observation
        :param actions: Actions
        :return: ``V(s)`` of shape (batch, 1), log probability of the actions, entropy of ``pi(.|s)``
        """
        _, distribution, q_values = self.evaluate_all(obs)
        return expected_value(distribution, q_values), distribution.log_prob(actions), distribution.entropy()

    def q_values(self, obs: PyTorchObs) -> th.Tensor:
        """
        :param obs: Observation
        :return: ``Q(s, .)`` of the online critic, shape (batch, n_actions)
        """
        features = super(ActorCriticPolicy, self).extract_features(obs, self.vf_features_extractor)
        return self.q_net(self.mlp_extractor.forward_critic(features))

    def target_q_values(self, obs: PyTorchObs) -> th.Tensor:
        """
        :param obs: Observation
        :return: ``Q_target(s, .)`` of the target critic, shape (batch, n_actions)
        """
        target = self.critic_target
        features = super(ActorCriticPolicy, self).extract_features(obs, target.features_extractor)  # type: ignore[arg-type]
        return target.q_net(target.latent_net(features))

    def predict_values(self, obs: PyTorchObs) -> th.Tensor:
        """
        The value SB3 adds, discounted, to the reward of a step that a time limit truncated (``TimeLimit.truncated``):
        the target critic's, as in every other bootstrap of QAC's TD targets.

        :param obs: Observation
        :return: ``V_target(s) = sum_a pi(a|s) Q_target(s, a)``, shape (batch, 1)
        """
        return self.target_values(obs)

    def target_values(self, obs: PyTorchObs) -> th.Tensor:
        """
        :param obs: Observation
        :return: ``V_target(s) = sum_a pi(a|s) Q_target(s, a)``, shape (batch, 1): the expected-SARSA bootstrap
        """
        return expected_value(self.get_distribution(obs), self.target_q_values(obs))

    def critic_parameters(self) -> list[nn.Parameter]:
        """:return: The online critic path's parameters, in the order of ``critic_target.parameters()``"""
        modules = (self.vf_features_extractor, self.mlp_extractor.value_net, self.q_net)
        return [param for module in modules for param in module.parameters()]


def expected_value(distribution: CategoricalDistribution, q_values: th.Tensor) -> th.Tensor:
    """
    :param distribution: ``pi(.|s)``
    :param q_values: ``Q(s, .)``, shape (batch, n_actions)
    :return: ``sum_a pi(a|s) Q(s, a)``, shape (batch, 1)
    """
    return (distribution.distribution.probs * q_values).sum(dim=-1, keepdim=True)


class QACCnnPolicy(QACPolicy, ActorCriticCnnPolicy):
    """:class:`QACPolicy` with SB3's ``ActorCriticCnnPolicy`` defaults (``NatureCNN`` features), for images."""


class QACMultiInputPolicy(QACPolicy, MultiInputActorCriticPolicy):
    """:class:`QACPolicy` with SB3's ``MultiInputActorCriticPolicy`` defaults (``CombinedExtractor``), for ``Dict``
    observations."""
