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
from policies.distributions import scale_floor

th.set_num_threads(1)

DTYPES = [th.float32, th.float64]
EXACT_RTOL = {th.float32: 1e-4, th.float64: 1e-9}
"""Relative error allowed on a probability whose exact value exceeds MEANINGFUL."""
MEANINGFUL = 1e-5
POWERS = [0.5, 1.0, 2.0, 4.0, 8.0]
SPECIALS = [0.0, -0.0, 1e30, -1e30, 1e-30, -1e-30, 1e-38, -1e-45, 3e38, 1.0, -2.5, 1e-6, 3e-7]
HOSTILE_ROWS = [
    [0.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, -2.0],
    [1e30, -1e30, 0.0, 1.0],
    [1e-30, -1e-30, 0.0, 1e-30],
    [1e30, 1e-30, 0.0, -1.0],
    [-1e30, 1.0, 1e-30, 3.0],
    [1e30, 1e30, 1e30, 1e30],
    [1e-38, 0.0, 0.0, 0.0],
    [1e-38, -1e-38, 1e-45, 0.0],
    [3e38, -3e38, 1e-45, 0.0],
    [1e-45, 2e-45, 0.0, -1e-45],
]


@st.composite
def thetas_away_from_zero(draw: st.DrawFn, min_log10: float = -2.0, max_log10: float = 2.0) -> np.ndarray:
    """Float64 (batch, actions) arrays with |theta| in [10^min_log10, 10^max_log10] and random signs."""
    shape = (draw(st.integers(1, 4)), draw(st.integers(2, 6)))
    log10 = draw(hnp.arrays(np.float64, shape, elements=st.floats(min_log10, max_log10)))
    signs = draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([-1.0, 1.0])))
    return signs * 10.0**log10


@st.composite
def thetas_at_any_scale(draw: st.DrawFn) -> np.ndarray:
    """Rows spanning six decades, some exact zeros (never a whole row), times one scale in [1e-12, 1e12]."""
    theta = draw(thetas_away_from_zero(min_log10=-6.0, max_log10=0.0))
    zeros = draw(hnp.arrays(np.bool_, theta.shape, elements=st.booleans()))
    zeros[:, 0] = False
    return np.where(zeros, 0.0, theta) * 10.0 ** draw(st.floats(-12.0, 12.0))


def hostile_thetas() -> st.SearchStrategy[np.ndarray]:
    """Float64 (batch, actions) arrays mixing exact zeros, 1e30, 1e-30, 1e-38, subnormals and ordinary values."""
    elements = st.one_of(st.sampled_from(SPECIALS), st.floats(-1e30, 1e30))
    shapes = st.tuples(st.integers(1, 4), st.integers(2, 6))
    return hnp.arrays(np.float64, shapes, elements=elements)


def escort_reference(theta: np.ndarray, p: float) -> np.ndarray:
    """pi(a) = |theta_a|^p / sum_b |theta_b|^p, straight from the definition in extended precision."""
    weights = np.abs(theta.astype(np.longdouble)) ** np.longdouble(p)
    return (weights / weights.sum(axis=-1, keepdims=True)).astype(np.float64)


def distribution(theta: np.ndarray, p: float, dtype: th.dtype = th.float64, **kwargs: float) -> EscortDistribution:
    return EscortDistribution(theta.shape[-1], p=p, **kwargs).proba_distribution(th.tensor(theta, dtype=dtype))


def probabilities(theta: np.ndarray, p: float, dtype: th.dtype = th.float64) -> np.ndarray:
    return distribution(theta, p, dtype).distribution.probs.double().numpy()


def as_dtype(theta: np.ndarray, dtype: th.dtype) -> np.ndarray:
    """theta rounded to dtype, back in float64: the input the distribution actually sees."""
    return th.tensor(theta, dtype=dtype).double().numpy()


def floor_effect(theta: np.ndarray, p: float, dtype: th.dtype) -> np.ndarray:
    """
    Per row, (K - 1) phi^p with phi = max(f, A / m) the row's relative floor: the documented bound on the relative
    change the floors make to the probabilities of the unfloored entries.
    """
    scale = np.maximum(np.abs(as_dtype(theta, dtype)).max(axis=-1), scale_floor(dtype))
    return (theta.shape[-1] - 1) * np.maximum(DEFAULT_EPS, scale_floor(dtype) / scale) ** p


def assert_exact(probs: np.ndarray, theta: np.ndarray, p: float, dtype: th.dtype) -> None:
    """Every probability whose exact value exceeds MEANINGFUL is exact to EXACT_RTOL; all of them sum to 1."""
    reference = escort_reference(as_dtype(theta, dtype), p)
    meaningful = reference > MEANINGFUL
    np.testing.assert_allclose(probs[meaningful], reference[meaningful], rtol=EXACT_RTOL[dtype], atol=0)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=EXACT_RTOL[dtype])


def all_log_probs(dist: EscortDistribution, n_actions: int, batch: int) -> th.Tensor:
    """(batch, actions) log_prob of every action."""
    actions = th.arange(n_actions).expand(batch, n_actions)
    return dist.log_prob(actions.T).T


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", POWERS)
@settings(max_examples=30, deadline=None)
@given(theta=thetas_at_any_scale())
def test_probabilities_are_exact_at_any_scale(dtype: th.dtype, p: float, theta: np.ndarray) -> None:
    assert_exact(probabilities(theta, p, dtype), theta, p, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", POWERS)
def test_gaussian_rows_are_exact_at_every_scale(dtype: th.dtype, p: float) -> None:
    theta = np.random.default_rng(0).standard_normal((1000, 4))
    for log10_scale in range(-12, 13, 4):
        assert_exact(probabilities(10.0**log10_scale * theta, p, dtype), 10.0**log10_scale * theta, p, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", POWERS)
@settings(max_examples=30, deadline=None)
@given(theta=thetas_at_any_scale(), log10_scale=st.floats(-9.0, 9.0), sign=st.sampled_from([-1.0, 1.0]))
def test_scale_invariance(dtype: th.dtype, p: float, theta: np.ndarray, log10_scale: float, sign: float) -> None:
    scale = sign * 10.0**log10_scale
    probs = probabilities(theta, p, dtype)
    # rounding c * theta in dtype moves each ratio |theta_a| / m by two ulps at most, each probability by about 2p ulps,
    # and the logarithm and softmax round again; a float32 row scaled below A / f = 4.8e-5 has the relative floor A / m
    rounding = (8 * p + 32) * th.finfo(dtype).eps
    floors = max(floor_effect(theta, p, dtype).max(), floor_effect(scale * theta, p, dtype).max())
    np.testing.assert_allclose(
        probabilities(scale * theta, p, dtype), probs, rtol=rounding + floors, atol=1e-3 * rounding + floors
    )


@pytest.mark.parametrize("dtype, rtol", [(th.float64, 1e-13), (th.float32, 1e-5)])
@pytest.mark.parametrize("scale", [1e-9, -1e-9, 1e-3, -1.0, 1e3, 1e9, -1e9])
def test_gaussian_rows_are_scale_invariant(dtype: th.dtype, rtol: float, scale: float) -> None:
    theta = np.random.default_rng(1).standard_normal((1000, 4))
    for p in POWERS:
        probs = probabilities(theta, p, dtype)
        np.testing.assert_allclose(probabilities(scale * theta, p, dtype), probs, rtol=rtol, atol=1e-3 * rtol * probs.min())


@pytest.mark.parametrize("dtype, p", [(th.float64, p) for p in POWERS] + [(th.float32, p) for p in POWERS[1:]])
def test_tiny_row_keeps_its_proportions(dtype: th.dtype, p: float) -> None:
    """In float32 the relative floor of this row is A / m = 2.4e-5: exact from p = 1."""
    theta = np.array([[1e-30, 2e-30, 0.0]])
    probs = probabilities(theta, p, dtype)[0]
    expected = np.array([1.0, 2.0**p]) / (1.0 + 2.0**p)
    np.testing.assert_allclose(probs[:2], expected, rtol=EXACT_RTOL[dtype], atol=0)
    assert 0 <= probs[2] <= 1.001 * floor_effect(theta, p, dtype)[0] / 2  # the zero's weight against the largest's 1
    assert distribution(theta, p, dtype).mode().item() == 1


def test_p2_tiny_row_is_one_fifth_four_fifths() -> None:
    for dtype in DTYPES:
        probs = probabilities(np.array([[1e-30, 2e-30, 0.0]]), 2.0, dtype)[0]
        np.testing.assert_allclose(probs, [0.2, 0.8, 0.0], rtol=EXACT_RTOL[dtype], atol=1e-9)


@pytest.mark.parametrize("p", POWERS)
def test_relative_floor_counts_small_ratios_as_eps(p: float) -> None:
    theta = np.array([[-2.0, 2e-3, 0.0, 1.0]])
    probs = distribution(theta, p, eps=1e-2).distribution.probs.numpy()
    weights = np.array([1.0, 1e-2**p, 1e-2**p, 0.5**p])
    np.testing.assert_allclose(probs[0], weights / weights.sum(), rtol=1e-12)


@settings(deadline=None)
@given(thetas_at_any_scale(), st.sampled_from(POWERS))
def test_entropy_is_minus_expected_log_prob(theta: np.ndarray, p: float) -> None:
    dist = distribution(theta, p)
    log_probs = all_log_probs(dist, theta.shape[1], theta.shape[0])
    minus_expected = -(log_probs.exp() * log_probs).sum(dim=-1)
    np.testing.assert_allclose(dist.entropy().numpy(), minus_expected.numpy(), rtol=1e-10, atol=1e-12)
    reference = escort_reference(theta, p)
    reference_entropy = -np.sum(reference * np.log(np.where(reference > 0, reference, 1.0)), axis=-1)
    np.testing.assert_allclose(dist.entropy().numpy(), reference_entropy, rtol=1e-9, atol=1e-12)


@given(hostile_thetas(), st.floats(0.25, 8.0))
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


def notes_score(theta: np.ndarray, actions: np.ndarray, p: float) -> np.ndarray:
    """d log pi(a)/d theta_c = p [a=c] / theta_c - p sign(theta_c) pi(c)^(1-1/p) / ||theta||_p (NOTES.md)."""
    one_hot = np.eye(theta.shape[1])[actions]
    norm = np.sum(np.abs(theta) ** p, axis=-1, keepdims=True) ** (1 / p)
    return p * one_hot / theta - p * np.sign(theta) * escort_reference(theta, p) ** (1 - 1 / p) / norm


@pytest.mark.parametrize("p", POWERS)
@settings(max_examples=40, deadline=None)
@given(theta=thetas_away_from_zero(), log10_scale=st.floats(-12.0, 12.0), action_seed=st.integers(0, 2**16))
def test_score_matches_analytic_formula(p: float, theta: np.ndarray, log10_scale: float, action_seed: int) -> None:
    theta = theta * 10.0**log10_scale
    actions = np.random.default_rng(action_seed).integers(theta.shape[1], size=theta.shape[0])
    theta_t = th.tensor(theta, requires_grad=True)
    dist = EscortDistribution(theta.shape[1], p=p).proba_distribution(theta_t)
    (score,) = th.autograd.grad(dist.log_prob(th.tensor(actions)).sum(), theta_t)
    size = p / np.abs(theta).min(axis=-1, keepdims=True)  # the largest term of the formula in each row
    assert np.all(np.abs(score.numpy() - notes_score(theta, actions, p)) <= 1e-12 * size)


@pytest.mark.parametrize("p", [0.5, 1.0, 2.0])
def test_gradients_match_finite_differences(p: float) -> None:
    theta = th.tensor(np.random.default_rng(2).uniform(0.2, 2.0, (3, 4)) * [1, -1, 1, -1], requires_grad=True)
    actions = th.tensor([0, 3, 1])

    def outputs(t: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        dist = EscortDistribution(4, p=p).proba_distribution(t)
        return dist.log_prob(actions), dist.entropy()

    assert th.autograd.gradcheck(outputs, (theta,), eps=1e-6, atol=1e-7)


def assert_gradient_orthogonal_to_theta(theta: th.Tensor, p: float) -> None:
    """
    Scale invariance, differentiated: theta . d log pi(a) / d theta = 0 to rounding, for every action a, in every row
    whose floors are relative (m >= A / f, or no magnitude below A); the absolute floor A is not scale invariant.
    """
    theta = theta.clone().requires_grad_(True)
    dist = EscortDistribution(theta.shape[1], p=p).proba_distribution(theta)
    magnitude = theta.detach().abs()
    floor = scale_floor(theta.dtype)
    relative = (magnitude.amax(dim=-1) >= floor / DEFAULT_EPS) | (magnitude >= floor).all(dim=-1)
    for action in range(theta.shape[1]):
        (grad,) = th.autograd.grad(dist.log_prob(th.full((theta.shape[0],), action)).sum(), theta, retain_graph=True)
        # each term is p times an upstream gradient of at most 1 before they cancel
        terms = (theta.detach() * grad).double()[relative]
        assert (terms.sum(dim=-1).abs() <= 16 * th.finfo(theta.dtype).eps * p * theta.shape[1]).all()


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=30, deadline=None)
@given(theta=thetas_at_any_scale(), p=st.sampled_from(POWERS))
def test_gradient_is_orthogonal_to_theta(dtype: th.dtype, theta: np.ndarray, p: float) -> None:
    assert_gradient_orthogonal_to_theta(th.tensor(theta, dtype=dtype), p)


@pytest.mark.parametrize("p", POWERS)
def test_gradient_is_orthogonal_to_theta_on_hostile_rows(p: float) -> None:
    """Floored actions too; float64, whose range holds every gradient of these rows (float32's would underflow)."""
    assert_gradient_orthogonal_to_theta(th.tensor(HOSTILE_ROWS, dtype=th.float64), p)


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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", POWERS)
def test_hostile_rows_stay_finite_and_exact(dtype: th.dtype, p: float) -> None:
    rows = np.array(HOSTILE_ROWS)
    dist = assert_everything_finite(th.tensor(rows, dtype=dtype), p)
    probs = dist.distribution.probs.detach().double().numpy()
    magnitudes = np.abs(as_dtype(rows, dtype))
    below_floor = magnitudes.max(axis=-1) < scale_floor(dtype)
    np.testing.assert_allclose(probs[below_floor], 0.25, rtol=1e-6)  # all zeros, or every magnitude subnormal
    exact = (floor_effect(rows, p, dtype) < EXACT_RTOL[dtype] / 10) & ~below_floor
    assert exact.sum() >= 6
    assert_exact(probs[exact], rows[exact], p, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=50, deadline=None)
@given(theta=hostile_thetas(), p=st.floats(0.25, 8.0))
def test_random_hostile_inputs_stay_finite(dtype: th.dtype, theta: np.ndarray, p: float) -> None:
    assert_everything_finite(th.tensor(theta, dtype=dtype), p)


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_zero_rows_are_uniform_with_zero_gradient(dtype: th.dtype) -> None:
    theta = th.zeros((3, 5), dtype=dtype, requires_grad=True)
    dist = EscortDistribution(5, p=2.0).proba_distribution(theta)
    th.testing.assert_close(dist.distribution.probs, th.full((3, 5), 0.2, dtype=dtype))
    (grad,) = th.autograd.grad(dist.log_prob(th.tensor([0, 2, 4])).sum() + dist.entropy().sum(), theta)
    assert th.equal(grad, th.zeros_like(grad))


@pytest.mark.parametrize("bad", [0.0, -1.0, -0.5, math.nan, math.inf, -math.inf, "2"])
def test_invalid_power_raises(bad: float) -> None:
    with pytest.raises(ValueError, match="escort power p"):
        EscortDistribution(3, p=bad)
    with pytest.raises(ValueError, match="escort power p"):
        escort_logits(th.ones(3), bad)


@pytest.mark.parametrize("bad", [0.0, -1e-6, 1.0, 2.0, math.nan, math.inf, "1e-6"])
def test_invalid_eps_raises(bad: float) -> None:
    with pytest.raises(ValueError, match="escort eps"):
        EscortDistribution(3, eps=bad)
    with pytest.raises(ValueError, match="escort eps"):
        escort_logits(th.ones(3), 2.0, eps=bad)


@pytest.mark.parametrize("p", [np.float32(2.0), np.float64(0.5), 3])
def test_numpy_and_integer_powers_are_accepted(p: float) -> None:
    probs = distribution(np.array([[1.0, 2.0]]), p).distribution.probs.numpy()
    np.testing.assert_allclose(probs, escort_reference(np.array([[1.0, 2.0]]), float(p)), rtol=1e-12)


def test_escort_logits_define_the_distribution() -> None:
    theta = th.tensor([[0.0, -3.0, 2.0], [1e-30, 4.0, -1e30]], dtype=th.float64)
    logits = escort_logits(theta, 3.0, eps=1e-4)
    ratios = theta.abs() / theta.abs().amax(dim=-1, keepdim=True)
    th.testing.assert_close(logits, 3.0 * th.log(ratios.clamp_min(1e-4)))
    assert (logits.amax(dim=-1) == 0).all()
    dist = EscortDistribution(3, p=3.0, eps=1e-4).proba_distribution(theta)
    th.testing.assert_close(dist.distribution.logits, th.log_softmax(logits, dim=-1))
    th.testing.assert_close(escort_logits(theta[0], 3.0, eps=1e-4), logits[0])
    th.testing.assert_close(escort_logits(-1e-20 * theta, 3.0, eps=1e-4), logits, rtol=1e-14, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logits_and_their_gradients_are_bounded(dtype: th.dtype) -> None:
    """Logits in [p log f, 0]; every partial derivative at most p / max(A, f m), m the row's scale."""
    theta = th.tensor(HOSTILE_ROWS, dtype=dtype, requires_grad=True)
    p = 8.0
    logits = escort_logits(theta, p)
    assert (logits <= 0).all() and (logits >= p * math.log(DEFAULT_EPS) - 1e-3).all()
    scale = theta.detach().double().abs().amax(dim=-1, keepdim=True)
    bound = p / th.clamp_min(DEFAULT_EPS * scale, scale_floor(dtype))
    for column in range(4):
        (grad,) = th.autograd.grad(logits[:, column].sum(), theta, retain_graph=True)
        assert (grad.double().abs() <= 1.001 * bound).all()


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
