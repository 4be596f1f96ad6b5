"""Actor-critic policies for SB3's PPO and A2C whose action distribution is the escort transform."""

from typing import Any

from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from policies.distributions import DEFAULT_EPS, EscortDistribution, check_escort_params

ESCORT_HEAD_GAIN = 0.01
"""Orthogonal gain of the action head's weights, divided by ``p`` (SB3 gives the softmax head 0.01)."""

ESCORT_HEAD_BIAS = 1.0
"""Initial bias of every action's ``theta``."""


class EscortActorCriticPolicy(ActorCriticPolicy):
    """
    Actor-critic policy (PPO, A2C) with the escort action distribution
    ``pi(a|s) = |theta_a(s)|^p / sum_b |theta_b(s)|^p`` for a ``Discrete`` action space.

    Takes every argument of SB3's ``ActorCriticPolicy``, plus ``escort_p`` and ``escort_eps``.

    The action head is initialised to ``theta(s) = 1 + W h(s)`` with ``W`` orthogonal of gain ``0.01 / p``. Since
    ``(1 + x)^p ~ exp(p x)``, the first policy matches, to first order, the near-uniform ``softmax(W' h)``
    (gain 0.01) of SB3's softmax policy, and an optimizer step of size ``lr`` on ``theta ~ 1`` moves the logits
    ``p * log|theta|`` by about ``p * lr``, as it moves softmax logits by ``lr``. SB3's own 0.01-gain init would make
    ``theta ~ 0``, where the scale-invariant escort policy is random and far from uniform.

    The CNN and multi-input variants reuse this class through their method resolution order.

    :param observation_space: Observation space
    :param action_space: Action space; must be ``Discrete``
    :param lr_schedule: Learning rate schedule
    :param args: Positional arguments of ``ActorCriticPolicy`` after ``lr_schedule``
    :param escort_p: Escort power ``p`` > 0
    :param escort_eps: Relative floor of the escort logits, in ``(0, 1)`` (see ``policies.escort_logits``)
    :param kwargs: Keyword arguments of ``ActorCriticPolicy``
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        *args: Any,
        escort_p: float = 2.0,
        escort_eps: float = DEFAULT_EPS,
        **kwargs: Any,
    ):
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"{type(self).__name__} needs a Discrete action space, got {action_space}")
        check_escort_params(escort_p, escort_eps)
        self.escort_p = escort_p
        self.escort_eps = escort_eps
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        """
        Build SB3's networks and optimizer around an escort distribution, then initialise the action head.

        SB3's orthogonal init runs inside ``super()._build``, so the head's init here comes after it. The optimizer
        already holds the head's parameters; they are re-initialised in place.

        :param lr_schedule: Learning rate schedule
        """
        assert isinstance(self.action_space, spaces.Discrete)
        self.action_dist = EscortDistribution(int(self.action_space.n), p=self.escort_p, eps=self.escort_eps)
        super()._build(lr_schedule)
        self._init_action_net()

    def _init_action_net(self) -> None:
        """Set ``theta(s) = 1 + W h(s)``, ``W`` orthogonal of gain ``0.01 / p``: a near-uniform first policy."""
        assert isinstance(self.action_net, nn.Linear)
        nn.init.orthogonal_(self.action_net.weight, gain=ESCORT_HEAD_GAIN / self.escort_p)
        nn.init.constant_(self.action_net.bias, ESCORT_HEAD_BIAS)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(escort_p=self.escort_p, escort_eps=self.escort_eps)
        return data


class EscortActorCriticCnnPolicy(EscortActorCriticPolicy, ActorCriticCnnPolicy):
    """
    :class:`EscortActorCriticPolicy` with SB3's ``ActorCriticCnnPolicy`` defaults (``NatureCNN`` features), for
    image observations.
    """


class EscortMultiInputActorCriticPolicy(EscortActorCriticPolicy, MultiInputActorCriticPolicy):
    """
    :class:`EscortActorCriticPolicy` with SB3's ``MultiInputActorCriticPolicy`` defaults (``CombinedExtractor``),
    for ``Dict`` observations.
    """
