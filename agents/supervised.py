"""Supervised training of a policy's actor network as a classifier, with softmax or escort cross-entropy.

The classifier *is* an SB3 actor-critic policy (stock ``ActorCriticPolicy`` for softmax, ``EscortActorCriticPolicy``
for escort), built with the same ``policy_kwargs`` and initialisation PPO and A2C would use: features extractor ->
actor MLP (SB3's default: 64-64, tanh) -> linear action head. Only the actor's parameters are trained; the value
head is left as initialised. So a supervised run and a policy-gradient run on the same data differ only in how the
gradient is formed, never in the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.utils import ConstantSchedule, get_device

from policies import EscortActorCriticPolicy
from policies.losses import escort_cross_entropy

LossFn = Callable[[th.Tensor, th.Tensor], th.Tensor]

OPTIMIZERS = ("sgd", "momentum", "adam")
"""``sgd``: plain SGD (what the theory assumes); ``momentum``: SGD with momentum; ``adam``: Adam."""

EVAL_CHUNK = 8192
"""Examples per forward pass when evaluating a whole split."""


def classification_head(policy: str, p: float = 2.0) -> tuple[type[ActorCriticPolicy], dict[str, Any], LossFn]:
    """
    The policy class, its extra kwargs and the matching loss for a parameterization.

    :param policy: ``"softmax"`` (cross-entropy of ``softmax(theta)``) or ``"escort"`` (escort cross-entropy, power p)
    :param p: Escort power
    :return: (policy class, extra policy kwargs, loss of ``(theta, labels)`` averaged over the batch)
    """
    heads: dict[str, Callable[[], tuple[type[ActorCriticPolicy], dict[str, Any], LossFn]]] = {
        "softmax": lambda: (ActorCriticPolicy, {}, F.cross_entropy),
        "escort": lambda: (EscortActorCriticPolicy, {"escort_p": p}, partial(escort_cross_entropy, p=p)),
    }
    if policy not in heads:
        raise ValueError(f"policy must be one of {tuple(heads)}, got {policy!r}")
    return heads[policy]()


def make_optimizer(
    name: str, params: list[th.nn.Parameter], learning_rate: float, momentum: float = 0.9
) -> th.optim.Optimizer:
    """
    :param name: One of :data:`OPTIMIZERS`
    :param params: Parameters to train
    :param learning_rate: Step size
    :param momentum: Momentum of the ``momentum`` optimizer
    :return: The optimizer
    """
    builders: dict[str, Callable[[], th.optim.Optimizer]] = {
        "sgd": lambda: th.optim.SGD(params, lr=learning_rate),
        "momentum": lambda: th.optim.SGD(params, lr=learning_rate, momentum=momentum),
        "adam": lambda: th.optim.Adam(params, lr=learning_rate),
    }
    if name not in builders:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    return builders[name]()


@dataclass(frozen=True)
class EpochMetrics:
    """Measurements after an epoch (epoch 0: at initialisation), all at the same parameters."""

    epoch: int
    train_loss: float
    """Mean loss over the whole training split."""
    train_accuracy: float
    test_accuracy: float
    output_grad_norm: float
    """Euclidean norm of the gradient of ``train_loss`` with respect to the output layer (weight and bias)."""

    def rows(self) -> list[tuple[int, str, float]]:
        """:return: tidy rows ``(epoch, metric, value)``"""
        return [(self.epoch, name, float(value)) for name, value in asdict(self).items() if name != "epoch"]


class Supervised:
    """
    Train the actor of a softmax or escort policy network as a classifier by minibatch gradient descent.

    For softmax the loss is ``-log softmax(theta)_y``, for escort ``-log(|theta_y|^p / ||theta||_p^p)``
    (:func:`policies.losses.escort_cross_entropy`), where ``theta`` is the action head's output. Predictions are the
    policy's mode (``argmax theta`` for softmax, ``argmax |theta|`` for escort).

    :param policy: ``"softmax"`` or ``"escort"``
    :param observation_space: Observation space of the data (a flat ``Box``)
    :param action_space: ``Discrete(n_classes)``
    :param p: Escort power
    :param optimizer: ``"sgd"``, ``"momentum"`` or ``"adam"``
    :param learning_rate: Step size
    :param momentum: Momentum of the ``momentum`` optimizer
    :param batch_size: Examples per gradient step
    :param policy_kwargs: Keyword arguments of the policy class (``net_arch``, ``activation_fn``, ...)
    :param seed: Seed of the initialisation and of the minibatch order
    :param device: Torch device (``"auto"`` picks CUDA when available)
    """

    def __init__(
        self,
        policy: str,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        *,
        p: float = 2.0,
        optimizer: str = "sgd",
        learning_rate: float = 0.1,
        momentum: float = 0.9,
        batch_size: int = 32,
        policy_kwargs: dict[str, Any] | None = None,
        seed: int = 0,
        device: str | th.device = "cpu",
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        policy_class, extra, self.loss_fn = classification_head(policy, p)
        self.device = get_device(device)
        th.manual_seed(seed)
        kwargs = {**(policy_kwargs or {}), **extra}
        self.policy = policy_class(observation_space, action_space, ConstantSchedule(learning_rate), **kwargs)
        self.policy.to(self.device)
        self.optimizer = make_optimizer(optimizer, self.actor_parameters(), learning_rate, momentum)
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)

    def actor_parameters(self) -> list[th.nn.Parameter]:
        """:return: the parameters between observation and ``theta``: features extractor, actor MLP, action head"""
        modules = (self.policy.pi_features_extractor, self.policy.mlp_extractor.policy_net, self.policy.action_net)
        return [param for module in modules for param in module.parameters()]

    def latent(self, obs: th.Tensor) -> th.Tensor:
        """:param obs: Observations ``(n, d)``
        :return: the actor MLP's output, the input of the action head"""
        features = self.policy.extract_features(obs, self.policy.pi_features_extractor)
        return self.policy.mlp_extractor.forward_actor(features)

    def theta(self, obs: th.Tensor) -> th.Tensor:
        """:param obs: Observations ``(n, d)``
        :return: the action head's output ``(n, n_classes)``: softmax logits, or escort parameters"""
        return self.policy.action_net(self.latent(obs))

    def predict(self, obs: np.ndarray) -> np.ndarray:
        """:param obs: Observations ``(n, d)``
        :return: predicted labels ``(n,)``, the policy's most likely actions"""
        inputs = th.tensor(np.asarray(obs), device=self.device)
        with th.no_grad():
            chunks = [self._mode(self.theta(x)).cpu().numpy() for x in self._chunks(inputs)]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)

    def train_epoch(self, x: th.Tensor, y: th.Tensor) -> None:
        """One pass over the data in shuffled minibatches.

        :param x: Training inputs on the device
        :param y: Training labels on the device
        """
        self.policy.set_training_mode(True)
        order = th.as_tensor(self.rng.permutation(len(y)), device=self.device)
        for start in range(0, len(y), self.batch_size):
            batch = order[start : start + self.batch_size]
            loss = self.loss_fn(self.theta(x[batch]), y[batch])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()

    def full_batch(self, x: th.Tensor, y: th.Tensor) -> tuple[float, float, float]:
        """
        Loss, accuracy, and the norm of the loss's gradient at the output layer, over a whole data set.

        :param x: Inputs on the device
        :param y: Labels on the device
        :return: (mean loss, accuracy, gradient norm with respect to the action head's weight and bias)
        :raises FloatingPointError: when the network's output is not finite (training diverged)
        """
        self.policy.set_training_mode(False)
        head = self.policy.action_net
        head.zero_grad()
        total, correct = 0.0, 0
        for xc, yc in zip(self._chunks(x), self._chunks(y)):
            with th.no_grad():
                latent = self.latent(xc)
            theta = head(latent)
            if not th.isfinite(theta).all():
                raise FloatingPointError("the network's output is not finite: training diverged (lower the learning rate)")
            loss = self.loss_fn(theta, yc) * (len(yc) / len(y))
            loss.backward()
            total += loss.item()
            correct += int((self._mode(theta.detach()) == yc).sum())
        grad_norm = th.sqrt(sum(param.grad.pow(2).sum() for param in head.parameters())).item()
        head.zero_grad()
        return total, correct / len(y), grad_norm

    def learn(
        self,
        train: tuple[np.ndarray, np.ndarray],
        test: tuple[np.ndarray, np.ndarray],
        epochs: int,
        callback: Callable[[EpochMetrics], None] | None = None,
    ) -> list[EpochMetrics]:
        """
        Train for ``epochs`` passes over ``train``, measuring before the first and after every epoch.

        :param train: Training inputs ``(n, d)`` float32 and labels ``(n,)``
        :param test: Test inputs and labels
        :param epochs: Passes over the training data
        :param callback: Called with each epoch's metrics as they come
        :return: ``epochs + 1`` records, epoch 0 being the initial network
        :raises FloatingPointError: when training diverges
        """
        x, y = (th.tensor(np.asarray(a), device=self.device) for a in train)
        history: list[EpochMetrics] = []
        for epoch in range(epochs + 1):
            if epoch > 0:
                self.train_epoch(x, y)
            loss, accuracy, grad_norm = self.full_batch(x, y)
            test_accuracy = float(np.mean(self.predict(test[0]) == test[1]))
            history.append(EpochMetrics(epoch, loss, accuracy, test_accuracy, grad_norm))
            if callback is not None:
                callback(history[-1])
        return history

    def save(self, path: str | Path) -> None:
        """:param path: Where to write the policy's ``state_dict`` (``torch.save``)"""
        th.save(self.policy.state_dict(), path)

    def _mode(self, theta: th.Tensor) -> th.Tensor:
        return self.policy.action_dist.proba_distribution(theta).mode()

    def _chunks(self, tensor: th.Tensor) -> Iterator[th.Tensor]:
        return (tensor[start : start + EVAL_CHUNK] for start in range(0, len(tensor), EVAL_CHUNK))
