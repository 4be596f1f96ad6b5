import math

import numpy as np
import pytest
import torch as th
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from stable_baselines3.common.distributions import CategoricalDistribution
from torch import nn

from policies import DEFAULT_EPS, EscortDistribution, escort_logits

th.set_num_threads(1)

SPECIALS = [0.0, -0.0, 1e30, -1e30, 1e-30, -1e-30, 1.0, -2.5, 1e-6, 3e-7]
HOSTILE_ROWS = [
    [0.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, -2.0],
    [1e30, -1e30, 0.0, 1.0],
    [1e-30, -1e-30, 0.0, 1e-30],
    [1e30, 1e-30, 0.0, -1.0],
    [-1e30, 1.0, 1e-30, 3.0],
    [1e30, 1e30, 1e30, 1e30],
]


@st.composite
def thetas_away_from_zero(draw: st.DrawFn, min_log10: float = -2.0, max_log10: float = 2.0) -> np.ndarray:
    """Float64 (batch, actions) arrays with |theta| in [10^min_log10, 10^max_log10] and random signs."""
    shape = (draw(st.integers(1, 4)), draw(st.integers(2, 6)))
    log10 = draw(hnp.arrays(np.float64, shape, elements=st.floats(min_log10, max_log10)))
    signs = draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([-1.0, 1.0])))
    return signs * 10.0**log10


def hostile_thetas() -> st.SearchStrategy[np.ndarray]:
    """Float64 (batch, actions) arrays mixing exact zeros, 1e30, 1e-30 and ordinary values."""
    elements = st.one_of(st.sampled_from(SPECIALS), st.floats(-1e30, 1e30))
    shapes = st.tuples(st.integers(1, 4), st.integers(2, 6))
    return hnp.arrays(np.float64, shapes, elements=elements)


powers = st.floats(0.25, 4.0)


def escort_reference(theta: np.ndarray, p: float) -> np.ndarray:
    """pi(a) = |theta_a|^p / sum_b |theta_b|^p, straight from the definition."""
    weights = np.abs(theta) ** p
    return weights / weights.sum(axis=-1, keepdims=True)


def eps_tolerance(theta: np.ndarray, p: float) -> float:
    """Relative error bound of the eps floor on probabilities and scores, with a safety factor."""
    return 4 * p * DEFAULT_EPS / np.abs(theta).min() + 1e-10


def distribution(theta: np.ndarray, p: float, dtype: th.dtype = th.float64, **kwargs: float) -> EscortDistribution:
    return EscortDistribution(theta.shape[-1], p=p, **kwargs).proba_distribution(th.tensor(theta, dtype=dtype))


def all_log_probs(dist: EscortDistribution, n_actions: int, batch: int) -> th.Tensor:
    """(batch, actions) log_prob of every action."""
    actions = th.arange(n_actions).expand(batch, n_actions)
    return dist.log_prob(actions.T).T


@given(thetas_away_from_zero(), powers)
def test_probabilities_are_the_escort_transform(theta: np.ndarray, p: float) -> None:
    probs = distribution(theta, p).distribution.probs.numpy()
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(probs, escort_reference(theta, p), rtol=eps_tolerance(theta, p), atol=1e-300)


@given(thetas_away_from_zero(), powers)
def test_entropy_is_minus_expected_log_prob(theta: np.ndarray, p: float) -> None:
    dist = distribution(theta, p)
    log_probs = all_log_probs(dist, theta.shape[1], theta.shape[0])
    minus_expected = -(log_probs.exp() * log_probs).sum(dim=-1)
    np.testing.assert_allclose(dist.entropy().numpy(), minus_expected.numpy(), rtol=1e-10, atol=1e-12)
    reference = escort_reference(theta, p)
    reference_entropy = -np.sum(reference * np.log(np.where(reference > 0, reference, 1.0)), axis=-1)
    np.testing.assert_allclose(dist.entropy().numpy(), reference_entropy, rtol=1e-3, atol=1e-6)


@given(hostile_thetas(), powers)
def test_mode_is_argmax_of_abs_theta(theta: np.ndarray, p: float) -> None:
    dist = distribution(theta, p)
    np.testing.assert_array_equal(dist.mode().numpy(), np.argmax(np.abs(theta), axis=-1))
    np.testing.assert_array_equal(dist.get_actions(deterministic=True).numpy(), np.argmax(np.abs(theta), axis=-1))


@pytest.mark.parametrize(
    "theta, expected",
    [([-5.0, 3.0, 4.0], 0), ([1e-30, 2e-30, 0.0], 1), ([0.0, -1e-30, 0.0], 1), ([1e30, -1.0000001e30, 7.0], 1)],
)
def test_mode_orders_magnitudes_the_logits_cannot_tell_apart(theta: list[float], expected: int) -> None:
    assert distribution(np.array([theta]), 2.0, dtype=th.float32).mode().item() == expected


@given(thetas_away_from_zero(min_log10=-1.0, max_log10=1.0), powers, st.floats(-1.0, 1.0), st.sampled_from([-1.0, 1.0]))
def test_scale_invariance(theta: np.ndarray, p: float, log10_scale: float, sign: float) -> None:
    scale = sign * 10.0**log10_scale
    probs = distribution(theta, p).distribution.probs.numpy()
    scaled_probs = distribution(scale * theta, p).distribution.probs.numpy()
    np.testing.assert_allclose(scaled_probs, probs, rtol=eps_tolerance(scale * theta, p) + eps_tolerance(theta, p))


@pytest.mark.parametrize("p", [0.5, 1.0, 2.0, 3.0])
@settings(max_examples=50)
@given(theta=thetas_away_from_zero(), action_seed=st.integers(0, 2**16))
def test_score_matches_analytic_formula(p: float, theta: np.ndarray, action_seed: int) -> None:
    actions = np.random.default_rng(action_seed).integers(theta.shape[1], size=theta.shape[0])
    theta_t = th.tensor(theta, requires_grad=True)
    dist = EscortDistribution(theta.shape[1], p=p).proba_distribution(theta_t)
    (score,) = th.autograd.grad(dist.log_prob(th.tensor(actions)).sum(), theta_t)
    # d log pi(a)/d theta_c = p [a=c] / theta_c - p sign(theta_c) |theta_c|^(p-1) / sum_b |theta_b|^p
    one_hot = np.eye(theta.shape[1])[actions]
    norm = np.sum(np.abs(theta) ** p, axis=-1, keepdims=True)
    expected = p * one_hot / theta - p * np.sign(theta) * np.abs(theta) ** (p - 1) / norm
    tol = eps_tolerance(theta, p)
    np.testing.assert_allclose(score.numpy(), expected, rtol=tol, atol=tol * p / np.abs(theta).min())


def assert_everything_finite(theta: th.Tensor, p: float) -> EscortDistribution:
    """Probabilities, log_prob of every action, entropy and their gradients are finite; returns the distribution."""
    theta = theta.clone().requires_grad_(True)
    dist = EscortDistribution(theta.shape[1], p=p).proba_distribution(theta)
    probs = dist.distribution.probs
    log_probs = all_log_probs(dist, theta.shape[1], theta.shape[0])
    entropy = dist.entropy()
    assert th.isfinite(probs).all() and th.isfinite(log_probs).all() and th.isfinite(entropy).all()
    assert (entropy >= 0).all() and (entropy <= math.log(theta.shape[1]) + 1e-5).all()
    th.testing.assert_close(probs.sum(dim=-1), th.ones(theta.shape[0], dtype=theta.dtype))
    for output in (log_probs.sum(), entropy.sum(), dist.log_prob(dist.sample()).sum()):
        (grad,) = th.autograd.grad(output, theta, retain_graph=True)
        assert th.isfinite(grad).all(), grad
    return dist


@pytest.mark.parametrize("dtype", [th.float32, th.float64])
@pytest.mark.parametrize("p", [0.5, 1.0, 2.0, 3.0])
def test_hostile_rows_stay_finite(dtype: th.dtype, p: float) -> None:
    theta = th.tensor(HOSTILE_ROWS, dtype=dtype)
    dist = assert_everything_finite(theta, p)
    uniform = th.full((4,), 0.25, dtype=dtype)
    th.testing.assert_close(dist.distribution.probs[0], uniform)
    th.testing.assert_close(dist.distribution.probs[3], uniform)
    th.testing.assert_close(dist.distribution.probs[6], uniform)


@pytest.mark.parametrize("dtype", [th.float32, th.float64])
@settings(max_examples=50)
@given(theta=hostile_thetas(), p=powers)
def test_random_hostile_inputs_stay_finite(dtype: th.dtype, theta: np.ndarray, p: float) -> None:
    assert_everything_finite(th.tensor(theta, dtype=dtype), p)


@pytest.mark.parametrize("dtype", [th.float32, th.float64])
def test_all_zero_rows_are_uniform(dtype: th.dtype) -> None:
    dist = distribution(np.zeros((3, 5)), 2.0, dtype=dtype)
    th.testing.assert_close(dist.distribution.probs, th.full((3, 5), 0.2, dtype=dtype))


@pytest.mark.parametrize("bad", [0.0, -1.0, -0.5, math.nan, math.inf, -math.inf, "2"])
def test_invalid_power_raises(bad: float) -> None:
    with pytest.raises(ValueError, match="escort power p"):
        EscortDistribution(3, p=bad)
    with pytest.raises(ValueError, match="escort power p"):
        escort_logits(th.ones(3), bad)


@pytest.mark.parametrize("bad", [0.0, -1e-6, math.nan, math.inf])
def test_invalid_eps_raises(bad: float) -> None:
    with pytest.raises(ValueError, match="escort eps"):
        EscortDistribution(3, eps=bad)
    with pytest.raises(ValueError, match="escort eps"):
        escort_logits(th.ones(3), 2.0, eps=bad)


@pytest.mark.parametrize("p", [np.float32(2.0), np.float64(0.5), 3])
def test_numpy_and_integer_powers_are_accepted(p: float) -> None:
    probs = distribution(np.array([[1.0, 2.0]]), p).distribution.probs.numpy()
    np.testing.assert_allclose(probs, escort_reference(np.array([[1.0, 2.0]]), float(p)), rtol=1e-5)


def test_escort_logits_define_the_distribution() -> None:
    theta = th.tensor([[0.0, -3.0, 2.0], [1e-30, 4.0, -1e30]], dtype=th.float64)
    logits = escort_logits(theta, 3.0, eps=1e-4)
    th.testing.assert_close(logits, 3.0 * th.log(theta.abs() + 1e-4))
    dist = EscortDistribution(3, p=3.0, eps=1e-4).proba_distribution(theta)
    th.testing.assert_close(dist.distribution.logits, th.log_softmax(logits, dim=-1))
    th.testing.assert_close(escort_logits(theta[0], 3.0, eps=1e-4), logits[0])


def test_samples_follow_the_escort_probabilities() -> None:
    th.manual_seed(0)
    theta = th.tensor([[1.0, -2.0, 3.0, 0.0]]).expand(20_000, 4)
    samples = EscortDistribution(4, p=2.0).proba_distribution(theta).sample()
    frequencies = th.bincount(samples, minlength=4).double() / samples.numel()
    np.testing.assert_allclose(frequencies.numpy(), [1 / 14, 4 / 14, 9 / 14, 0.0], atol=0.015)


def test_is_an_sb3_categorical_distribution() -> None:
    dist = EscortDistribution(5, p=2.0)
    assert isinstance(dist, CategoricalDistribution)
    net = dist.proba_distribution_net(latent_dim=7)
    assert isinstance(net, nn.Linear) and (net.in_features, net.out_features) == (7, 5)
    theta = th.tensor([[0.5, -4.0, 1.0, 2.0, 0.0]])
    assert dist.actions_from_params(theta, deterministic=True).item() == 1
    actions, log_prob = dist.log_prob_from_params(theta)
    th.testing.assert_close(log_prob, dist.distribution.log_prob(actions))
    assert actions.item() != 4
