from policies.actor_critic import EscortActorCriticCnnPolicy, EscortActorCriticPolicy, EscortMultiInputActorCriticPolicy
from policies.distributions import DEFAULT_EPS, EscortDistribution, escort_logits
from policies.extractors import FEATURES_EXTRACTORS, MinAtarCNN, MiniGridCNN
from policies.losses import escort_cross_entropy

__all__ = [
    "DEFAULT_EPS",
    "EscortActorCriticCnnPolicy",
    "EscortActorCriticPolicy",
    "EscortDistribution",
    "EscortMultiInputActorCriticPolicy",
    "FEATURES_EXTRACTORS",
    "MinAtarCNN",
    "MiniGridCNN",
    "escort_cross_entropy",
    "escort_logits",
]
