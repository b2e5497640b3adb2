"""physgrad.sine: every gradient mode against its closed form (numpy), the analytic
inverse against a brute-force search, behaviour near x = 0, errors, TorchScript."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import physgrad

REPOSITORY = Path(__file__).resolve().parents[2]
MODES = ("adjoint", "physical", "newton", "inverse_gradient")


def sample_points(n=200, seed=0):
    """The paper's a in [0.1, 10.1); x of both signs with |x| in [0.05, 2.05) (away from the floor)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.1, 10.1, n)
    x = rng.uniform(0.05, 2.05, n) * rng.choice([-1.0, 1.0], n)
    g = rng.normal(size=n)
    return torch.from_numpy(x), torch.from_numpy(a), torch.from_numpy(g)


def backward_of(mode, x, a, g, **options):
    """dL/dx (and dL/da where a requires grad) of L with dL/dy = g, through the op in `mode`."""
    x = x.clone().requires_grad_()
    physgrad.sine(x, a, grad_mode=mode, **options).backward(g.to(x.dtype))
    return x.grad


def brute_force_nearest(a, x, t):
    """The x' with sin(a/x') = clip(t, -1, 1) nearest to x in phase a/x (paper B.2), on x's
    side of 0, by enumerating both ladders of solution phases around x's phase
    (independent of the library's bracketing)."""
    a, x, t = (np.asarray(v, dtype=np.float64) for v in (a, x, t))
    t = np.clip(t, -1.0, 1.0)
    centre = np.floor(a / x / (2 * np.pi))
    k = centre[:, None] + np.arange(-60, 61)[None, :]
    phases = np.concatenate([np.arcsin(t)[:, None] + 2 * np.pi * k, (np.pi - np.arcsin(t))[:, None] + 2 * np.pi * k], 1)
    with np.errstate(divide="ignore"):
        candidates = a[:, None] / phases
    distance = np.where(candidates * x[:, None] > 0, np.abs(phases - (a / x)[:, None]), np.inf)
    return candidates[np.arange(len(x)), distance.argmin(1)]


def test_forward_is_sin_a_over_x_in_any_shape_and_dtype():
    x, a, _ = sample_points(24)
    np.testing.assert_allclose(physgrad.sine(x, a).numpy(), np.sin(a.numpy() / x.numpy()), rtol=0, atol=1e-15)
    shaped = physgrad.sine(x.view(2, 3, 4), a.view(2, 3, 4))
    assert shaped.shape == (2, 3, 4)
    torch.testing.assert_close(shaped.flatten(), physgrad.sine(x, a), rtol=0, atol=0)
    single = physgrad.sine(x.float(), a)
    assert single.dtype == torch.float32
    np.testing.assert_allclose(single.numpy(), np.sin(a.numpy() / x.float().double().numpy()), atol=1e-6)
    strided = physgrad.sine(x.view(4, 6).t(), a.view(4, 6).t())
    torch.testing.assert_close(strided, physgrad.sine(x.view(4, 6), a.view(4, 6)).t(), rtol=0, atol=0)
    assert physgrad.sine(torch.zeros(0), torch.ones(0)).shape == (0,)
    assert physgrad.sine(torch.zeros(0, 3), torch.ones(0, 3)).shape == (0, 3)


def test_adjoint_is_the_clipped_derivative_times_g():
    x, a, g = sample_points()
    xn, an, gn = x.numpy(), a.numpy(), g.numpy()
    derivative = -an / xn**2 * np.cos(an / xn)
    np.testing.assert_allclose(backward_of("adjoint", x, a, g).numpy(), derivative * gn, rtol=1e-12, atol=1e-300)
    clipped = backward_of("adjoint", x, a, g, adjoint_clip=1.0).numpy()
    np.testing.assert_allclose(clipped, np.clip(derivative, -1, 1) * gn, rtol=1e-12, atol=0)
    assert (np.abs(derivative) > 1).mean() > 0.5  # the clip is active at most points


def test_adjoint_differentiates_a_exactly():
    x, a, g = sample_points()
    a = a.clone().requires_grad_()
    physgrad.sine(x, a, grad_mode="adjoint", adjoint_clip=1.0).backward(g)  # the clip applies to dP/dx only
    xn, an = x.numpy(), a.detach().numpy()
    np.testing.assert_allclose(a.grad.numpy(), np.cos(an / xn) / xn * g.numpy(), rtol=1e-12, atol=0)


def test_adjoint_passes_gradcheck_in_x_and_a():
    x, a, _ = sample_points(12, seed=1)
    x = (x.sign() * (0.6 + x.abs())).requires_grad_()  # away from 0, where sin(a/x) oscillates fast
    a = (0.2 + 0.3 * a).requires_grad_()
    assert torch.autograd.gradcheck(lambda xv, av: physgrad.sine(xv, av, grad_mode="adjoint"), (x, a))


@pytest.mark.parametrize("y_step", [1.0, 0.7])
def test_physical_is_the_nearest_solution_of_the_y_space_target(y_step):
    x, a, g = sample_points(seed=2)
    y = np.sin(a.numpy() / x.numpy())
    target = y - y_step * g.numpy()
    assert (np.abs(target) > 1).any() and (np.abs(target) < 1).any()  # clamped and exact targets both occur
    expected = x.numpy() - brute_force_nearest(a.numpy(), x.numpy(), target)
    dx = backward_of("physical", x, a, g, y_step=y_step).numpy()
    np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=1e-12)
    x_new = x.numpy() - dx
    np.testing.assert_allclose(np.sin(a.numpy() / x_new), np.clip(target, -1, 1), atol=1e-9)


def test_physical_with_target_minus_one_lands_on_the_nearest_minimum():
    x, a, _ = sample_points(seed=3)
    g = torch.from_numpy(np.sin(a.numpy() / x.numpy()) + 5.0)  # t = y - g = -5: clamped to -1, a minimum
    x_new = x - backward_of("physical", x, a, g)
    np.testing.assert_allclose(np.sin(a.numpy() / x_new.numpy()), -1.0, rtol=0, atol=1e-12)
    nearest = brute_force_nearest(a.numpy(), x.numpy(), -np.ones(len(x)))
    np.testing.assert_allclose(x_new.numpy(), nearest, rtol=1e-12)
    torch.testing.assert_close(x_new, physgrad.sine_nearest_minimum(a, x), rtol=1e-14, atol=0)
    # nearest in phase, not merely a minimum: no other minimum on x's side is closer
    phases = 1.5 * np.pi + 2 * np.pi * np.arange(-200, 200)
    phase = (a / x).numpy()
    same_side = np.where(phases[None, :] * phase[:, None] > 0, np.abs(phases[None, :] - phase[:, None]), np.inf)
    assert (same_side.min(1) >= np.abs((a / x_new).numpy() - phase) - 1e-9).all()


def test_l2_loss_against_minus_one_with_unit_step_lands_on_the_nearest_minimum():
    x, a, _ = sample_points(1000, seed=4)
    x = x.requires_grad_()
    y = physgrad.sine(x, a, grad_mode="physical", y_step=1.0)
    physgrad.losses.l2(y, -torch.ones_like(y)).backward()
    x_new = x.detach() - x.grad
    np.testing.assert_allclose(np.sin(a.numpy() / x_new.numpy()), -1.0, rtol=0, atol=1e-12)
    # The y-space target y - g = y - fl(y + 1) is -1 up to one rounding (1e-16), and
    # asin is sqrt-ill-conditioned at -1: a 1e-16 target error moves the exact
    # solution by ~1.5e-8 rad in phase.  Most land on the minimum bit for bit.
    minimum = physgrad.sine_nearest_minimum(a, x.detach())
    torch.testing.assert_close(x_new, minimum, rtol=1e-8, atol=0)
    assert (x_new == minimum).double().mean() > 0.5


def test_newton_is_the_papers_update_flipped_towards_the_target_and_clipped():
    x, a, g = sample_points(seed=5)
    xn, an = x.numpy(), a.numpy()
    phase = an / xn
    target = np.clip(np.sin(phase) - 0.8 * g.numpy(), -1, 1)
    length = np.abs(xn**2 * np.cos(phase) / (2 * xn * np.cos(phase) - an * np.sin(phase)))
    derivative = -an / xn**2 * np.cos(phase)
    for clip in (1.0, 0.05):
        expected = np.sign((np.sin(phase) - target) * derivative) * np.minimum(length, clip)
        dx = backward_of("newton", x, a, g, y_step=0.8, step_clip=clip).numpy()
        np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=1e-15)
    assert (length > 0.05).any() and (length < 0.05).any()


def test_newton_repeated_walks_to_a_minimum():
    rng = np.random.default_rng(6)
    a = rng.uniform(0.1, 10.1, 50)
    minimum_phase = 1.5 * np.pi + 2 * np.pi * rng.integers(-3, 4, 50)
    x = torch.from_numpy(a / (minimum_phase + rng.uniform(-1.0, 1.0, 50)))  # 1 rad of a minimum's phase: downhill to it
    a = torch.from_numpy(a)
    for _ in range(30):
        y = physgrad.sine(x, a)
        x = x - backward_of("newton", x, a, y + 1.0)  # target -1
    np.testing.assert_allclose(physgrad.sine(x, a).numpy(), -1.0, rtol=0, atol=1e-12)
    # a minimum of its own basin for most; a clipped step of length 1 can hop to another one
    assert np.isclose(x.numpy(), a.numpy() / minimum_phase, rtol=1e-10).mean() > 0.7


def test_inverse_gradient_is_height_over_slope_clipped():
    x, a, g = sample_points(seed=7)
    xn, an = x.numpy(), a.numpy()
    phase = an / xn
    height = np.sin(phase) - np.clip(np.sin(phase) - g.numpy(), -1, 1)
    derivative = -an / xn**2 * np.cos(phase)
    for clip in (1.0, 0.01):
        dx = backward_of("inverse_gradient", x, a, g, step_clip=clip).numpy()
        np.testing.assert_allclose(dx, np.clip(height / derivative, -clip, clip), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("mode", MODES)
def test_no_nan_at_and_near_zero(mode):
    x = torch.tensor([0.0, 1e-300, -1e-300, 1e-8, -0.0], dtype=torch.float64)
    a = torch.tensor([1.0, 0.1, 10.1, 3.0, -2.0], dtype=torch.float64)
    y = physgrad.sine(x, a, grad_mode=mode)
    assert y.isfinite().all()
    for g in (torch.ones_like(x), y + 1.0, -torch.ones_like(x)):
        assert backward_of(mode, x, a, g).isfinite().all(), (mode, g)
        assert backward_of(mode, x.float(), a, g).isfinite().all()
    if mode == "adjoint":
        a_grad = a.clone().requires_grad_()
        physgrad.sine(x, a_grad, grad_mode=mode).backward(torch.ones_like(x))
        # sine.h: the derivatives at x_eff = sign(x) max(|x|, |a| / 1e8), sign(+-0) = +1
        x_eff = torch.where(x.abs() >= a.abs() / 1e8, x, torch.where(x < 0, -1.0, 1.0) * a.abs() / 1e8)
        # (d/da = cos(a/x_eff) / x_eff, d/dx = -a cos(a/x_eff) / x_eff^2; scaled to the cosine, which at
        # |phase| ~1e8 depends on the rounding of a/x_eff in the 8th digit)
        cosine = torch.cos(a / x_eff)
        torch.testing.assert_close(a_grad.grad * x_eff, cosine, rtol=0, atol=1e-6)
        x_grad = backward_of(mode, x, a, torch.ones_like(x))
        torch.testing.assert_close(x_grad * x_eff ** 2 / -a, cosine, rtol=0, atol=1e-6)


def test_a_requiring_grad_is_refused_outside_the_adjoint_mode():
    x, a, _ = sample_points(4)
    with pytest.raises(ValueError, match="a is data: only grad_mode='adjoint' differentiates a"):
        physgrad.sine(x, a.clone().requires_grad_(), grad_mode="physical")


def test_backward_op_can_be_called_alone():
    x, a, g = sample_points(6)
    y = physgrad.sine(x, a)
    dx, da = torch.ops.physgrad.sine_backward(g, x, a, y, "physical", 1.0, 0.0, 1.0)
    assert da is None
    torch.testing.assert_close(dx, backward_of("physical", x, a, g))
    dx, da = torch.ops.physgrad.sine_backward(g, x, a, y, "adjoint", 1.0, 0.0, 1.0)
    assert dx.shape == da.shape == x.shape


def test_nearest_minimum_gives_the_supervised_labels_without_grad():
    x, a, _ = sample_points(seed=8)
    ones = torch.ones_like(a)
    labels = physgrad.sine_nearest_minimum(a, ones)
    np.testing.assert_allclose(labels.numpy(), brute_force_nearest(a.numpy(), ones.numpy(), -np.ones(len(a))),
                               rtol=1e-14)
    np.testing.assert_allclose(np.sin(a.numpy() / labels.numpy()), -1.0, atol=1e-12)
    a_grad, x_grad = a.float().requires_grad_(), x.float().requires_grad_()
    result = physgrad.sine_nearest_minimum(a_grad, x_grad)
    assert not result.requires_grad and result.dtype == torch.float32
    np.testing.assert_allclose(result.numpy(), physgrad.sine_nearest_minimum(a.float(), x.float()).numpy())


def test_module_mode_attribute_and_context_manager():
    x, a, g = sample_points(10)
    layer = physgrad.nn.Sine(grad_mode="adjoint", adjoint_clip=1.0)
    xg = x.clone().requires_grad_()
    layer(xg, a).backward(g)
    torch.testing.assert_close(xg.grad, backward_of("adjoint", x, a, g, adjoint_clip=1.0))
    layer.grad_mode = "newton"
    xg.grad = None
    layer(xg, a).backward(g)
    torch.testing.assert_close(xg.grad, backward_of("newton", x, a, g))
    with physgrad.grad_mode("physical"):
        xg.grad = None
        layer(xg, a).backward(g)
    torch.testing.assert_close(xg.grad, backward_of("physical", x, a, g))


@pytest.mark.parametrize("bad, error, words", [
    (lambda: physgrad.sine(torch.ones(3, dtype=torch.int64), torch.ones(3)), TypeError, "x must be float32 or float64"),
    (lambda: physgrad.sine(torch.ones(3), torch.ones(3, dtype=torch.float16)), TypeError, "a must be float32"),
    (lambda: physgrad.sine(torch.ones(3), torch.ones(4)), ValueError, "a has shape [4] but x has shape [3]"),
    (lambda: physgrad.sine(torch.tensor(1.0), torch.tensor(1.0)), ValueError, "x must have at least 1 dimension"),
    (lambda: physgrad.sine(torch.ones(3), torch.tensor([1.0, 0.0, 1.0])), ValueError, "|a[1]| = 0"),
    (lambda: physgrad.sine(torch.tensor([1.0, math.nan]), torch.ones(2)), RuntimeError, "x[1] = nan"),
    (lambda: physgrad.sine(torch.ones(3), torch.ones(3), grad_mode="lbfgs"), ValueError,
     "this op offers 'adjoint', 'physical', 'newton', 'inverse_gradient'"),
    (lambda: physgrad.sine(torch.ones(3), torch.ones(3), grad_mode="sideways"), ValueError, "unknown grad_mode"),
    (lambda: physgrad.sine(torch.ones(3), torch.ones(3), adjoint_clip=-1.0), ValueError, "adjoint_clip"),
    (lambda: physgrad.sine(torch.ones(3), torch.ones(3), step_clip=0.0), ValueError, "step_clip"),
    (lambda: physgrad.sine(torch.ones(3), torch.ones(3), y_step=math.inf), ValueError, "y_step"),
    (lambda: physgrad.sine_nearest_minimum(torch.ones(2), torch.ones(3)), ValueError, "a has shape [2] but x0"),
    (lambda: physgrad.sine_nearest_minimum(torch.zeros(2), torch.ones(2)), ValueError, "|a[0]| = 0"),
])
def test_bad_input_is_a_clear_python_error(bad, error, words):
    with pytest.raises(error) as info:
        bad()
    assert words in str(info.value)
    assert physgrad.sine(torch.ones(2), torch.ones(2)).isfinite().all()  # still usable afterwards


def test_nan_in_the_incoming_gradient_is_an_error_naming_it():
    x = torch.ones(2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"physgrad\.sine: grad_y\[1\] = nan is not finite"):
        physgrad.sine(x, torch.ones(2), grad_mode="physical").backward(torch.tensor([0.0, math.nan]))


class MlpThenSine(torch.nn.Module):
    """The paper's sin experiment: an MLP predicts x from a; the op gives sin(a/x)."""

    def __init__(self, grad_mode: str) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(1, 10, dtype=torch.float64)
        self.out = torch.nn.Linear(10, 1, dtype=torch.float64)
        self.physics = physgrad.nn.Sine(grad_mode=grad_mode)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.physics(self.out(torch.relu(self.hidden(a))), a)


def weight_gradient(model, a):
    model.zero_grad()
    y = model(a)
    physgrad.losses.l2(y, -torch.ones_like(y)).backward()
    return model.hidden.weight.grad.clone()


def test_scripted_module_round_trip_in_a_new_process(tmp_path):
    a = torch.linspace(0.1, 10.1, 16, dtype=torch.float64).unsqueeze(1)
    for mode in MODES:
        torch.manual_seed(0)
        eager = MlpThenSine(mode)
        scripted = torch.jit.script(eager)
        torch.testing.assert_close(weight_gradient(scripted, a), weight_gradient(eager, a))
    torch.manual_seed(0)
    model = MlpThenSine("physical")
    torch.jit.save(torch.jit.script(model), str(tmp_path / "model.pt"))
    torch.save(a, tmp_path / "a.pt")
    expected = weight_gradient(model, a)
    program = f"""
import torch, physgrad
model = torch.jit.load({str(tmp_path / 'model.pt')!r})
a = torch.load({str(tmp_path / 'a.pt')!r})
y = model(a)
physgrad.losses.l2(y, -torch.ones_like(y)).backward()
torch.save(model.hidden.weight.grad, {str(tmp_path / 'grad.pt')!r})
"""
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY / "python"))
    subprocess.run([sys.executable, "-c", program], check=True, env=environment, timeout=120)
    torch.testing.assert_close(torch.load(tmp_path / "grad.pt"), expected)
