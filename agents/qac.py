"""QAC: actor-critic with sampled actions and a learned Q(s, a), for softmax, escort and NeuRD policies."""

from collections import deque
from collections.abc import Callable, Iterator
from operator import itemgetter
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import explained_variance, obs_as_tensor, polyak_update
from torch.nn import functional as F

from agents.qac_policy import PARAMETERIZATIONS, QACCnnPolicy, QACMultiInputPolicy, QACPolicy

SelfQAC = TypeVar("SelfQAC", bound="QAC")

ACTOR_UPDATES = ("sampled", "all_actions", "none")


class QAC(OnPolicyAlgorithm):
    """
    Q actor-critic: an on-policy actor-critic whose critic learns ``Q(s, a)`` for every action.

    Critic: ``Q(s_t, a_t)`` regresses (Huber loss) on the TD(lambda) return of the rollout,
    ``G_t = r_t + gamma * (1 - d_t) * ((1 - lambda) * V_target(s_{t+1}) + lambda * G_{t+1})``, bootstrapped with the
    expected-SARSA value ``V_target(s) = sum_a pi(a|s) Q_target(s, a)`` of a Polyak-averaged target critic
    (``td_lambda=1``: n-step returns up to the end of the rollout; ``td_lambda=0``: one-step targets). A time limit
    (``TimeLimit.truncated``) ends an episode without terminating it: that step's return is
    ``r_t + gamma * V_target(terminal observation)``, the bootstrap SB3 adds to its reward through ``predict_values``.

    Critic replay (``replay_rollouts > 0``): after the updates on the rollout, ``replay_updates`` critic-only steps on
    minibatches drawn uniformly from the transitions of the last ``replay_rollouts`` rollouts (the current one included),
    regressing ``Q(s, a)`` on the one-step expected-SARSA target ``r + gamma * (1 - d) * V_target(s')`` of the current
    policy, which is valid whatever policy took the action. On-policy minibatches come from a few trajectories at a time;
    replayed ones are spread over many, which lets ``Q`` resolve the small differences between actions that the actor
    follows (``benchmarks/qac_critic.py``). A time limit's bootstrap stays the one added to the reward when the step was
    collected. The replay holds observations, so it is for small ones; with a shared features extractor its steps move
    the actor's features too.

    Actor, with ``A(s, a) = Q(s, a) - V(s)`` and ``V(s) = sum_a pi(a|s) Q(s, a)`` from the online critic:

    - softmax and escort, ``sampled``: ascend ``grad log pi(a_t|s_t) * A(s_t, a_t)``, the taken action only;
    - softmax and escort, ``all_actions``: ascend ``sum_a pi(a|s) grad log pi(a|s) * A(s, a)``;
    - neurd (Hennes et al., 2020): ascend ``sum_a grad z(s, a) * A(s, a)`` on the mean-centred logits ``z``, with a
      logit only increasing while below ``+neurd_beta`` and only decreasing while above ``-neurd_beta``, advantages
      clipped to ``neurd_adv_clip``; ``sampled`` uses ``grad z(s, a_t) * A(s, a_t) / pi(a_t|s_t)``, the importance
      weight clipped to ``neurd_is_clip``;
    - ``none``: the actor is frozen and QAC evaluates the policy (with a shared, trainable features extractor, as
      ``CnnPolicy`` has, the critic still moves the actor's features: pass ``share_features_extractor=False``).

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy); its ``parameterization``
        keyword chooses softmax, escort or neurd
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, a number or a function of the remaining progress (from 1 to 0)
    :param n_steps: Steps per environment per rollout
    :param gamma: Discount factor
    :param td_lambda: lambda of the TD(lambda) target of Q
    :param n_epochs: Passes over each rollout
    :param batch_size: Minibatch size (None: the whole rollout, one gradient step per epoch)
    :param tau: Polyak coefficient of the target critic, applied after every gradient step
    :param replay_rollouts: Rollouts the critic replay holds (0: no replay)
    :param replay_updates: Critic-only gradient steps on replayed minibatches (of ``batch_size``) per rollout
    :param actor_update: ``sampled``, ``all_actions`` or ``none`` (policy evaluation)
    :param ent_coef: Entropy bonus coefficient
    :param vf_coef: Critic loss coefficient
    :param max_grad_norm: Maximum norm of the gradient
    :param neurd_beta: NeuRD threshold on the mean-centred logits
    :param neurd_adv_clip: NeuRD advantages are clipped to ``[-neurd_adv_clip, neurd_adv_clip]``
    :param neurd_is_clip: Upper bound of the importance weight ``1/pi(a_t|s_t)`` of sampled NeuRD
    :param stats_window_size: Window size for the rollout logging
    :param tensorboard_log: The log location for tensorboard (if None, no logging)
    :param policy_kwargs: Additional arguments of the policy (``parameterization``, ``escort_p``, ``net_arch``, ...)
    :param verbose: Verbosity level: 0 none, 1 info, 2 debug
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": QACPolicy,
        "CnnPolicy": QACCnnPolicy,
        "MultiInputPolicy": QACMultiInputPolicy,
    }
    PARAMETERIZATIONS: ClassVar[tuple[str, ...]] = PARAMETERIZATIONS
    ACTOR_UPDATES: ClassVar[tuple[str, ...]] = ACTOR_UPDATES
    policy: QACPolicy

    def __init__(
        self,
        policy: str | type[QACPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        n_steps: int = 16,
        gamma: float = 0.99,
        td_lambda: float = 0.9,
        n_epochs: int = 4,
        batch_size: int | None = 64,
        tau: float = 0.05,
        replay_rollouts: int = 0,
        replay_updates: int = 0,
        actor_update: str = "all_actions",
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        neurd_beta: float = 2.0,
        neurd_adv_clip: float = 10.0,
        neurd_is_clip: float = 10.0,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        if actor_update not in ACTOR_UPDATES:
            raise ValueError(f"actor_update must be one of {', '.join(ACTOR_UPDATES)}, got {actor_update!r}")
        if not 0.0 <= td_lambda <= 1.0 or not 0.0 < tau <= 1.0:
            raise ValueError(f"td_lambda must be in [0, 1] and tau in (0, 1], got {td_lambda} and {tau}")
        if n_epochs < 1 or (batch_size is not None and batch_size < 1):
            raise ValueError(f"n_epochs and batch_size must be >= 1, got {n_epochs} and {batch_size}")
        if replay_rollouts < 0 or replay_updates < 0 or (replay_updates > 0) != (replay_rollouts > 0):
            raise ValueError(
                f"replay_rollouts and replay_updates must be both 0 or both >= 1, got {replay_rollouts}, {replay_updates}"
            )
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=td_lambda,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=False,
            sde_sample_freq=-1,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
            _init_setup_model=False,
            supported_action_spaces=(spaces.Discrete,),
        )
        self.td_lambda = td_lambda
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.tau = tau
        self.replay_rollouts = replay_rollouts
        self.replay_updates = replay_updates
        self.actor_update = actor_update
        self.neurd_beta = neurd_beta
        self.neurd_adv_clip = neurd_adv_clip
        self.neurd_is_clip = neurd_is_clip
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        self.replay_buffer: deque[tuple[Any, ...]] = deque(maxlen=max(self.replay_rollouts, 1))

    def train(self) -> None:
        """Update the critic and the actor on the rollout just collected, then the critic alone on replayed rollouts."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        # TD(lambda) target of Q(s_t, a_t), bootstrapped with V_target(s') = sum_a pi(a|s') Q_target(s', a)
        self.rollout_buffer.returns[:] = self._q_targets()
        if self.replay_rollouts:
            self._remember_rollout()
        metrics: dict[str, list[float]] = {"critic_loss": [], "policy_loss": [], "entropy_loss": [], "advantage_abs_mean": []}
        q_taken_all, targets_all = [], []

        for epoch in range(self.n_epochs):
            for batch in self.rollout_buffer.get(self.batch_size):
                actions = batch.actions.long().flatten()
                head, distribution, q_values = self.policy.evaluate_all(batch.observations)
                # Critic: Huber(Q(s_t, a_t), G_t)
                q_taken = _taken(q_values, actions)
                critic_loss = F.smooth_l1_loss(q_taken, batch.returns)
                # Advantage from the learned critic: A(s, a) = Q(s, a) - sum_b pi(b|s) Q(s, b)
                probs = distribution.distribution.probs
                with th.no_grad():
                    advantages = q_values - (probs * q_values).sum(dim=-1, keepdim=True)
                actor_loss = self._actor_loss(head, probs, distribution.distribution.logits, advantages, actions)
                entropy_loss = -distribution.entropy().mean() if self.actor_update != "none" else th.zeros(())
                self._gradient_step(actor_loss + self.ent_coef * entropy_loss + self.vf_coef * critic_loss)
                for name, value in zip(metrics, (critic_loss, actor_loss, entropy_loss, advantages.abs().mean()), strict=True):
                    metrics[name].append(value.item())
                if epoch == self.n_epochs - 1:
                    q_taken_all.append(q_taken.detach().cpu().numpy())
                    targets_all.append(batch.returns.cpu().numpy())

        # Critic replay: Huber(Q(s, a), r + gamma * (1 - d) * V_target(s')) on past transitions, for the current policy
        for obs, actions, rewards, next_obs, next_done in self._replay_batches():
            with th.no_grad():
                targets = rewards + self.gamma * (1.0 - next_done) * self.policy.target_values(next_obs).flatten()
            replay_loss = F.smooth_l1_loss(_taken(self.policy.q_values(obs), actions), targets)
            self._gradient_step(self.vf_coef * replay_loss)
            metrics.setdefault("replay_critic_loss", []).append(replay_loss.item())

        q_taken_last, targets_last = np.concatenate(q_taken_all), np.concatenate(targets_all)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for name, values in metrics.items():
            self.logger.record(f"train/{name}", float(np.mean(values)))
        self.logger.record("train/explained_variance", float(explained_variance(q_taken_last, targets_last)))
        self.logger.record("train/q_mean", float(q_taken_last.mean()))

    def _gradient_step(self, loss: th.Tensor) -> None:
        """
        One clipped gradient step on ``loss``, then the target critic's Polyak step.

        :param loss: The loss to descend
        """
        self.policy.optimizer.zero_grad()
        loss.backward()
        th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        self.policy.optimizer.step()
        # Target critic: theta_target <- tau * theta + (1 - tau) * theta_target
        polyak_update(self.policy.critic_parameters(), self.policy.critic_target.parameters(), self.tau)
        self._n_updates += 1

    def _next_steps(self) -> tuple[Any, np.ndarray]:
        """
        :return: The next observation of every step of the rollout, flattened to (n_steps * n_envs, ...), and ``d_t``,
            shape (n_steps, n_envs): 1 after the last step of an episode (a truncated step's reward already holds
            ``gamma * V_target(s_T)``)
        """
        buffer = self.rollout_buffer
        next_obs = _flatten(_shift(buffer.observations, self._last_obs))  # type: ignore[arg-type]
        next_done = np.concatenate([buffer.episode_starts[1:], self._last_episode_starts[None]]).astype(np.float32)
        return next_obs, next_done

    def _remember_rollout(self) -> None:
        """Add the rollout's transitions ``(s, a, r, s', d)``, flattened over steps and envs, to the critic replay."""
        buffer = self.rollout_buffer
        next_obs, next_done = self._next_steps()
        obs = _map(np.copy, _flatten(buffer.observations))
        self.replay_buffer.append((obs, buffer.actions.flatten(), buffer.rewards.flatten(), next_obs, next_done.flatten()))

    def _replay_batches(self) -> Iterator[tuple[Any, th.Tensor, th.Tensor, Any, th.Tensor]]:
        """
        :return: ``replay_updates`` minibatches ``(s, a, r, s', d)`` of ``batch_size`` transitions (a rollout's number
            when None), drawn uniformly with replacement from the critic replay
        """
        columns = [_map(lambda *parts: np.concatenate(parts), *column) for column in zip(*self.replay_buffer, strict=True)]
        for _ in range(self.replay_updates):
            index = np.random.randint(len(columns[1]), size=self.batch_size or self.n_steps * self.n_envs)
            rows = itemgetter(index)
            obs, actions, rewards, next_obs, next_done = (obs_as_tensor(_map(rows, column), self.device) for column in columns)
            yield obs, actions.long(), rewards, next_obs, next_done

    def _q_targets(self) -> np.ndarray:
        """
        :return: ``G_t`` for every step of the rollout, shape (n_steps, n_envs)
        """
        buffer = self.rollout_buffer
        next_obs, next_done = self._next_steps()
        with th.no_grad():
            next_values = self.policy.target_values(obs_as_tensor(next_obs, self.device))  # type: ignore[arg-type]
        next_values = next_values.cpu().numpy().reshape(next_done.shape)
        returns = np.zeros_like(buffer.rewards)
        lambda_return = next_values[-1]
        for step in reversed(range(buffer.buffer_size)):
            bootstrap = (1.0 - self.td_lambda) * next_values[step] + self.td_lambda * lambda_return
            lambda_return = buffer.rewards[step] + self.gamma * (1.0 - next_done[step]) * bootstrap
            returns[step] = lambda_return
        return returns

    def _actor_loss(
        self, head: th.Tensor, probs: th.Tensor, log_probs: th.Tensor, advantages: th.Tensor, actions: th.Tensor
    ) -> th.Tensor:
        """
        :param head: The actor head's output (logits, mean-centred for neurd; escort ``theta``)
        :param probs: ``pi(.|s)``, shape (batch, n_actions)
        :param log_probs: ``log pi(.|s)``, shape (batch, n_actions)
        :param advantages: ``A(s, .)`` (no gradient), shape (batch, n_actions)
        :param actions: Taken actions, shape (batch,)
        :return: The loss whose negative gradient is the actor update
        """
        if self.actor_update == "none":
            return th.zeros((), device=head.device)
        if self.policy.parameterization == "neurd":
            clipped = advantages.clamp(-self.neurd_adv_clip, self.neurd_adv_clip)
            if self.actor_update == "sampled":
                weight = (1.0 / _taken(probs.detach(), actions)).clamp(max=self.neurd_is_clip)
                return neurd_loss(_taken(head, actions), weight * _taken(clipped, actions), self.neurd_beta)
            return neurd_loss(head, clipped, self.neurd_beta)
        if self.actor_update == "sampled":
            return -(_taken(log_probs, actions) * _taken(advantages, actions)).mean()
        return -(probs.detach() * log_probs * advantages).sum(dim=-1).mean()

    def learn(
        self: SelfQAC,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 100,
        tb_log_name: str = "QAC",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfQAC:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )


def neurd_loss(logits: th.Tensor, advantages: th.Tensor, beta: float) -> th.Tensor:
    """
    NeuRD surrogate: its negative gradient with respect to the logits is the thresholded advantage.

    :param logits: Mean-centred logits ``z`` (any shape)
    :param advantages: Advantages (no gradient), same shape
    :param beta: A logit may only increase while ``z < beta`` and only decrease while ``z > -beta``
    :return: ``-mean_s sum_a z(s, a) * [A(s, a) thresholded]``
    """
    can_move = th.where(advantages > 0, logits < beta, logits > -beta)
    step = (advantages * can_move).detach()
    return -(logits * step).reshape(logits.shape[0], -1).sum(dim=-1).mean()


def _taken(values: th.Tensor, actions: th.Tensor) -> th.Tensor:
    return values.gather(1, actions[:, None]).squeeze(1)


def _map(fn: Callable[..., np.ndarray], *obs: Any) -> Any:
    """``fn`` applied to arrays, or key by key to dicts of arrays (``Dict`` observations)."""
    if isinstance(obs[0], dict):
        return {key: fn(*(part[key] for part in obs)) for key in obs[0]}
    return fn(*obs)


def _flatten(obs: Any) -> Any:
    """(n_steps, n_envs, ...) arrays, or a dict of them, as (n_steps * n_envs, ...)."""
    return _map(lambda values: values.reshape(-1, *values.shape[2:]), obs)


def _shift(stored: Any, last: Any) -> Any:
    """Next observations of a rollout: step t+1's stored observation, and ``last`` after the final step."""
    return _map(lambda rows, final: np.concatenate([rows[1:], np.asarray(final).reshape(rows.shape[1:])[None]]), stored, last)


__all__ = ["QAC", "QACCnnPolicy", "QACMultiInputPolicy", "QACPolicy", "neurd_loss"]
