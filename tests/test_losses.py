import math

import numpy as np
import pytest
import torch as th
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from policies import EscortDistribution, escort_cross_entropy

th.set_num_threads(1)


def random_theta(n: int, k: int, seed: int, dtype: th.dtype = th.float64) -> th.Tensor:
    """Entries of random sign with magnitudes in [0.1, 2]: away from zero, where the closed forms hold."""
    rng = np.random.default_rng(seed)
    magnitude = rng.uniform(0.1, 2.0, size=(n, k))
    return th.tensor(magnitude * rng.choice([-1.0, 1.0], size=(n, k)), dtype=dtype)


def formula_gradient(theta: th.Tensor, target: th.Tensor, p: float) -> th.Tensor:
    """-(p / theta_y) e_y + p sign(theta) |theta|^(p-1) / ||theta||_p^p, one row per example."""
    norm_p = theta.abs().pow(p).sum(dim=-1, keepdim=True)
    grad = p * th.sign(theta) * theta.abs().pow(p - 1) / norm_p
    rows = th.arange(len(target))
    grad[rows, target] -= p / theta[rows, target]
    return grad


@pytest.mark.parametrize("p", [0.5, 1.0, 2.0, 3.0])
def test_value_is_minus_log_escort_probability(p: float) -> None:
    theta, target = random_theta(6, 5, seed=1), th.tensor([0, 1, 2, 3, 4, 0])
    probs = theta.abs().pow(p) / theta.abs().pow(p).sum(dim=-1, keepdim=True)
    expected = -th.log(probs[th.arange(6), target])
    loss = escort_cross_entropy(theta, target, p=p, eps=1e-12, reduction="none")
    assert th.allclose(loss, expected, rtol=1e-9, atol=0)


@pytest.mark.parametrize("p", [0.5, 1.0, 2.0, 3.0])
def test_gradient_matches_the_formula(p: float) -> None:
    theta, target = random_theta(6, 5, seed=2).requires_grad_(True), th.tensor([4, 3, 2, 1, 0, 2])
    escort_cross_entropy(theta, target, p=p, eps=1e-12, reduction="sum").backward()
    assert th.allclose(theta.grad, formula_gradient(theta.detach(), target, p), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_gradient_matches_finite_differences(p: float) -> None:
    theta, target = random_theta(4, 3, seed=3).requires_grad_(True), th.tensor([0, 2, 1, 1])
    assert th.autograd.gradcheck(lambda t: escort_cross_entropy(t, target, p=p), (theta,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [th.float32, th.float64])
@pytest.mark.parametrize("p", [0.5, 1.0, 2.0, 4.0, 8.0])
def test_equals_minus_escort_distribution_log_prob(dtype: th.dtype, p: float) -> None:
    theta, target = random_theta(8, 6, seed=4, dtype=dtype), th.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    theta[0, 0] = 0.0
    theta[1] = 0.0
    theta[2] *= 1e-30
    theta[3] *= 1e30
    theta[4, 4] = 1e-38
    log_prob = EscortDistribution(6, p=p).proba_distribution(theta).log_prob(target)
    tolerance = 16 * th.finfo(dtype).eps  # log_softmax against logits - logsumexp: the same logits, rounded apart
    th.testing.assert_close(
        escort_cross_entropy(theta, target, p=p, reduction="none"), -log_prob, rtol=tolerance, atol=tolerance
    )


def test_reductions_match_torch_conventions() -> None:
    theta, target = random_theta(5, 4, seed=5), th.tensor([0, 1, 2, 3, 0])
    per_example = escort_cross_entropy(theta, target, reduction="none")
    assert per_example.shape == (5,)
    assert th.allclose(escort_cross_entropy(theta, target), per_example.mean())
    assert th.allclose(escort_cross_entropy(theta, target, reduction="sum"), per_example.sum())
    single = escort_cross_entropy(theta[2], target[2])
    assert single.shape == () and th.allclose(single, per_example[2])


def test_escort_cross_entropy_is_not_softmax_cross_entropy() -> None:
    theta, target = random_theta(5, 4, seed=6), th.tensor([0, 1, 2, 3, 0])
    assert not th.allclose(escort_cross_entropy(theta, target), F.cross_entropy(theta, target))


def exact_cross_entropy(theta: np.ndarray, target: np.ndarray, p: float) -> np.ndarray:
    """-log(|theta_y|^p / sum_b |theta_b|^p), straight from the definition in extended precision."""
    weights = np.abs(theta.astype(np.longdouble)) ** np.longdouble(p)
    probs = weights / weights.sum(axis=-1, keepdims=True)
    return -np.log(probs[np.arange(len(target)), target]).astype(np.float64)


@pytest.mark.parametrize("dtype, rtol", [(th.float64, 1e-13), (th.float32, 1e-6)])
def test_exact_for_a_small_coordinate(dtype: th.dtype, rtol: float) -> None:
    theta, target = np.array([[3.0, 0.1, -0.2]] * 3), np.array([0, 1, 2])
    loss = escort_cross_entropy(th.tensor(theta, dtype=dtype), th.tensor(target), p=1.0, reduction="none")
    np.testing.assert_allclose(loss.double().numpy(), exact_cross_entropy(theta, target, 1.0), rtol=rtol)


@pytest.mark.parametrize("dtype, atol", [(th.float64, 1e-9), (th.float32, 1e-4)])
@pytest.mark.parametrize("p", [0.5, 1.0, 2.0, 4.0, 8.0])
def test_exact_at_every_scale(dtype: th.dtype, atol: float, p: float) -> None:
    """Where pi(target) > 1e-5, pi is exact to a relative error of atol, so -log pi is exact to atol."""
    rng = np.random.default_rng(8)
    theta, target = rng.standard_normal((500, 5)), rng.integers(5, size=500)
    for log10_scale in range(-12, 13, 3):
        scaled = th.tensor(10.0**log10_scale * theta, dtype=dtype)
        loss = escort_cross_entropy(scaled, th.tensor(target), p=p, reduction="none").double().numpy()
        exact = exact_cross_entropy(scaled.double().numpy(), target, p)
        meaningful = exact < -math.log(1e-5)
        np.testing.assert_allclose(loss[meaningful], exact[meaningful], rtol=0, atol=atol)


@pytest.mark.parametrize("scale", [1e-9, -1e-9, 1e-3, -1.0, 1e3, -1e6, 1e9])
def test_scale_invariant_and_sign_blind(scale: float) -> None:
    theta, target = random_theta(5, 4, seed=7), th.tensor([3, 2, 1, 0, 3])
    theta[0, 1] = 0.0
    for p in (0.5, 2.0, 8.0):
        loss = escort_cross_entropy(theta, target, p=p, reduction="none")
        th.testing.assert_close(escort_cross_entropy(scale * theta, target, p=p, reduction="none"), loss, rtol=1e-13, atol=0)


@pytest.mark.parametrize("p", [0.5, 2.0])
def test_gradient_matches_the_formula_at_every_scale(p: float) -> None:
    theta, target = random_theta(6, 5, seed=9), th.tensor([4, 3, 2, 1, 0, 2])
    for scale in (1e-12, 1e-6, 1e6, 1e12):
        scaled = (scale * theta).requires_grad_(True)
        escort_cross_entropy(scaled, target, p=p, reduction="sum").backward()
        # homogeneous of degree -1: the gradient at scale * theta is the gradient at theta over scale
        expected = formula_gradient(theta, target, p) / scale
        assert th.allclose(scaled.grad, expected, rtol=1e-9, atol=1e-12 / scale)


@pytest.mark.parametrize("bad", [{"p": 0.0}, {"p": -1.0}, {"p": math.inf}, {"eps": 0.0}, {"eps": 1.0}, {"reduction": "avg"}])
def test_invalid_arguments_raise(bad: dict) -> None:
    with pytest.raises(ValueError):
        escort_cross_entropy(th.ones(2, 3), th.tensor([0, 1]), **bad)


HOSTILE = {
    "zero target": [[0.0, 1.0, 2.0]],
    "all-zero row": [[0.0, 0.0, 0.0]],
    "huge": [[3e38, -1e30, 1e20]],
    "tiny": [[1e-38, -1e-30, 1e-45]],
    "huge next to tiny": [[3e38, 1e-45, 0.0]],
    "mixed signs": [[-5.0, 0.0, 5.0]],
}


@pytest.mark.parametrize("case", HOSTILE)
@pytest.mark.parametrize("p", [0.5, 2.0, 8.0])
def test_finite_value_and_gradient_on_hostile_inputs(case: str, p: float) -> None:
    theta = th.tensor(HOSTILE[case], dtype=th.float32).repeat(3, 1).requires_grad_(True)
    loss = escort_cross_entropy(theta, th.tensor([0, 1, 2]), p=p, reduction="sum")
    loss.backward()
    assert th.isfinite(loss) and loss >= 0
    assert th.isfinite(theta.grad).all()


def test_all_zero_row_is_uniform_with_zero_gradient() -> None:
    theta = th.zeros(2, 7, requires_grad=True)
    loss = escort_cross_entropy(theta, th.tensor([0, 6]))
    loss.backward()
    assert loss.item() == pytest.approx(math.log(7), rel=1e-6)
    assert th.equal(theta.grad, th.zeros(2, 7))


def test_float64_extremes_stay_finite() -> None:
    theta = th.tensor([[1e300, 1e-300, 0.0], [-1e-300, 1e300, 1e-320]], dtype=th.float64, requires_grad=True)
    loss = escort_cross_entropy(theta, th.tensor([1, 0]), reduction="sum")
    loss.backward()
    assert th.isfinite(loss) and th.isfinite(theta.grad).all()


@settings(max_examples=100, deadline=None)
@given(
    arrays(np.float32, (4, 5), elements=st.floats(width=32, allow_nan=False, allow_infinity=False)),
    st.lists(st.integers(0, 4), min_size=4, max_size=4),
    st.sampled_from([0.5, 1.0, 2.0, 4.0]),
)
def test_any_finite_float32_input_gives_finite_loss_and_gradient(theta_np: np.ndarray, target: list[int], p: float) -> None:
    theta = th.tensor(theta_np, requires_grad=True)
    loss = escort_cross_entropy(theta, th.tensor(target), p=p)
    loss.backward()
    assert th.isfinite(loss) and loss >= 0
    assert th.isfinite(theta.grad).all()
