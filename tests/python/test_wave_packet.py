"""physgrad.wave_packet and physgrad.wave_packet_fit: forward against numpy, the
adjoint by gradcheck, Gauss-Newton (one step and solved), L-BFGS, the bounded
fitter, errors, TorchScript."""
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


def packet_numpy(params, samples=256, frequency=4.0, sigma=20.0):
    """The paper's B.1 packet A sin(f xi) exp(-(xi - xi0)^2 / (2 sigma^2)) at xi = 0 .. samples-1, per row."""
    xi = np.arange(samples, dtype=np.float64)[None, :]
    xi0, amplitude = np.asarray(params)[:, :1], np.asarray(params)[:, 1:]
    return amplitude * np.sin(frequency * xi) * np.exp(-(xi - xi0) ** 2 / (2 * sigma**2))


def gauss_newton_step_numpy(params, target, samples=256, frequency=4.0, sigma=20.0, damping=1e-4):
    """p - p_new for one Marquardt-scaled damped Gauss-Newton step, per row (first try, lambda = damping)."""
    steps = []
    xi = np.arange(samples, dtype=np.float64)
    for (xi0, amplitude), t in zip(np.asarray(params), np.asarray(target)):
        shape = np.sin(frequency * xi) * np.exp(-(xi - xi0) ** 2 / (2 * sigma**2))
        jacobian = np.stack([amplitude * shape * (xi - xi0) / sigma**2, shape], 1)
        normal = jacobian.T @ jacobian
        delta = np.linalg.solve(normal + damping * np.diag(np.diag(normal)), -jacobian.T @ (amplitude * shape - t))
        steps.append(-delta)
    return np.array(steps)


def near(truth, seed=0, position=4.0, amplitude=0.4):
    rng = np.random.default_rng(seed)
    offset = np.stack([rng.uniform(-position, position, len(truth)), rng.uniform(-amplitude, amplitude, len(truth))], 1)
    return truth + torch.from_numpy(offset)


TRUTH = torch.tensor([[100.3, 2.7], [180.0, 1.2], [60.5, 3.3]], dtype=torch.float64)


def parameter_gradient(mode, params, target, **options):
    params = params.clone().requires_grad_()
    physgrad.losses.l2(physgrad.wave_packet(params, grad_mode=mode, **options), target).backward()
    return params.grad


def test_forward_matches_numpy_with_paper_and_other_settings():
    y = physgrad.wave_packet(TRUTH)
    assert y.shape == (3, 256) and y.dtype == torch.float64
    np.testing.assert_allclose(y.numpy(), packet_numpy(TRUTH.numpy()), rtol=0, atol=1e-14)
    other = physgrad.wave_packet(TRUTH, samples=100, frequency=1.3, sigma=7.0)
    np.testing.assert_allclose(other.numpy(), packet_numpy(TRUTH.numpy(), 100, 1.3, 7.0), rtol=0, atol=1e-14)
    single = physgrad.wave_packet(TRUTH.float())
    assert single.dtype == torch.float32
    np.testing.assert_allclose(single.numpy(), packet_numpy(TRUTH.float().double().numpy()), atol=1e-6)
    assert physgrad.wave_packet(torch.zeros(0, 2)).shape == (0, 256)
    assert physgrad.solve_stats("wave_packet").phase == "forward"


def test_adjoint_passes_gradcheck():
    params = torch.tensor([[14.3, 1.7], [25.0, -0.6]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda p: physgrad.wave_packet(p, grad_mode="adjoint", samples=40, frequency=1.3, sigma=6.0), (params,))


def test_newton_is_one_damped_gauss_newton_step():
    target = physgrad.wave_packet(TRUTH)
    start = near(TRUTH)
    step = parameter_gradient("newton", start, target)
    np.testing.assert_allclose(step.numpy(), gauss_newton_step_numpy(start.numpy(), target.numpy()), rtol=1e-9)
    stats = physgrad.solve_stats("wave_packet")
    assert stats.phase == "newton" and stats.all_converged and stats.iterations == [1, 1, 1]


def test_newton_repeated_through_backward_converges_from_near_the_solution():
    target = physgrad.wave_packet(TRUTH)
    params = near(TRUTH, seed=1)
    for _ in range(8):
        params = params - parameter_gradient("newton", params, target)
    torch.testing.assert_close(params, TRUTH, rtol=0, atol=1e-9)
    assert parameter_gradient("newton", TRUTH, target).abs().max() == 0  # stationary at the solution


def test_physical_reaches_the_target_parameters_in_one_call():
    target = physgrad.wave_packet(TRUTH)
    start = near(TRUTH, seed=2)
    reached = start - parameter_gradient("physical", start, target)
    torch.testing.assert_close(reached, TRUTH, rtol=0, atol=1e-9)
    stats = physgrad.solve_stats("wave_packet")
    assert stats.phase == "physical" and stats.all_converged
    assert all(2 <= steps <= 20 for steps in stats.iterations) and max(stats.residual_norms) < 1e-9


def test_physical_with_noise_stops_at_the_least_squares_minimum():
    target = physgrad.wave_packet(TRUTH) + 0.1 * torch.randn(3, 256, dtype=torch.float64,
                                                             generator=torch.Generator().manual_seed(0))
    reached = near(TRUTH, seed=3) - parameter_gradient("physical", near(TRUTH, seed=3), target)
    assert physgrad.solve_stats("wave_packet").all_converged
    assert parameter_gradient("newton", reached, target).abs().max() < 1e-7  # no further Gauss-Newton progress
    assert (reached - TRUTH).abs().max() < 1.0


def test_y_step_scales_the_y_space_target():
    start = near(TRUTH, seed=4)
    y = physgrad.wave_packet(start)
    g = y - physgrad.wave_packet(TRUTH)
    halfway_target = y - 0.5 * g
    params = start.clone().requires_grad_()
    physgrad.wave_packet(params, grad_mode="physical", y_step=0.5).backward(g)
    reached = start - params.grad
    refit = start - parameter_gradient("physical", start, halfway_target)
    torch.testing.assert_close(reached, refit, rtol=0, atol=1e-12)


def test_lbfgs_approaches_the_target_as_iterations_grow():
    target = physgrad.wave_packet(TRUTH)
    start = near(TRUTH, seed=5, position=2.0, amplitude=0.2)
    errors = [(start - parameter_gradient("lbfgs", start, target, lbfgs_iterations=n) - TRUTH).abs().max().item()
              for n in (1, 40)]
    assert errors[1] < 1e-6 < errors[0]
    assert physgrad.solve_stats("wave_packet").phase == "lbfgs"


def test_float32_gradients_come_back_in_float32():
    target = physgrad.wave_packet(TRUTH).float()
    for mode in ("adjoint", "newton", "physical", "lbfgs"):
        grad = parameter_gradient(mode, near(TRUTH, seed=6).float(), target)
        assert grad.dtype == torch.float32, mode
        # the float64 computation on the same (float32-rounded) inputs, rounded
        expected = parameter_gradient(mode, near(TRUTH, seed=6).float().double(), target.double())
        torch.testing.assert_close(grad, expected.float(), rtol=1e-5, atol=1e-6 * expected.abs().max().item())


def test_on_failure_warn_is_accepted_by_the_forward():
    y = physgrad.wave_packet(TRUTH, on_failure="warn")
    assert y.isfinite().all() and physgrad.solve_stats("wave_packet").all_converged


def test_module_default_mode_is_the_declared_one_and_context_manager_overrides():
    layer = physgrad.nn.WavePacket()
    assert layer.grad_mode == physgrad.op_info("wave_packet").default_mode == "physical"
    target = physgrad.wave_packet(TRUTH)
    start = near(TRUTH, seed=7)
    params = start.clone().requires_grad_()
    physgrad.losses.l2(layer(params), target).backward()
    torch.testing.assert_close(params.grad, parameter_gradient("physical", start, target))
    params.grad = None
    with physgrad.grad_mode("newton"):
        physgrad.losses.l2(layer(params), target).backward()
    torch.testing.assert_close(params.grad, parameter_gradient("newton", start, target))


def test_fit_respects_bounds_and_reports_each_example():
    truth = torch.tensor([[131.0, 2.6], [122.5, 1.4], [30.0, 3.9], [225.0, 3.5], [128.0, 6.0]], dtype=torch.float64)
    target = physgrad.wave_packet(truth)
    params, converged = physgrad.wave_packet_fit(target)
    assert params.shape == (5, 2) and converged.shape == (5,) and converged.dtype == torch.bool
    lower, upper = torch.tensor([25.6, 1.0], dtype=torch.float64), torch.tensor([230.4, 4.0], dtype=torch.float64)
    assert ((params >= lower) & (params <= upper)).all()
    assert converged[:2].all()
    torch.testing.assert_close(params[:2], truth[:2], rtol=0, atol=1e-4)
    assert params[4, 1] == 4.0 and abs(params[4, 0] - 128.0) < 1e-3  # A = 6 is out of bounds: held at the bound
    stats = physgrad.solve_stats("wave_packet_fit")
    assert stats.phase == "fit" and stats.converged == converged.tolist() and all(i > 0 for i in stats.iterations)
    _, stopped = physgrad.wave_packet_fit(target, max_iterations=1)
    assert not stopped[:4].any()  # the last one, centred at the start, is done by one projected step
    assert physgrad.solve_stats("wave_packet_fit").iterations[:4] == [1, 1, 1, 1]
    narrow, _ = physgrad.wave_packet_fit(target.float(), initial=(130.0, 2.5), lower=(120.0, 2.0), upper=(135.0, 3.0))
    assert narrow.dtype == torch.float32
    assert ((narrow >= torch.tensor([120.0, 2.0])) & (narrow <= torch.tensor([135.0, 3.0]))).all()


@pytest.mark.parametrize("bad, error, words", [
    (lambda: physgrad.wave_packet(torch.ones(2, 3)), ValueError, "params must be [B, 2]"),
    (lambda: physgrad.wave_packet(torch.ones(2)), ValueError, "params must have 2 dimensions"),
    (lambda: physgrad.wave_packet(torch.ones(2, 2, dtype=torch.int32)), TypeError, "params must be float32 or float64"),
    (lambda: physgrad.wave_packet(torch.ones(2, 2), samples=0), ValueError, "samples must be"),
    (lambda: physgrad.wave_packet(torch.ones(2, 2), sigma=0.0), ValueError, "sigma must be positive"),
    (lambda: physgrad.wave_packet(torch.ones(2, 2), frequency=math.nan), ValueError, "frequency must be finite"),
    (lambda: physgrad.wave_packet(torch.ones(2, 2), grad_mode="inverse_gradient"), ValueError,
     "this op offers 'adjoint', 'physical', 'newton', 'lbfgs'"),
    (lambda: physgrad.wave_packet(torch.ones(2, 2), grad_mode="sideways"), ValueError, "unknown grad_mode"),
    (lambda: physgrad.wave_packet(torch.ones(2, 2), on_failure="ignore"), ValueError, "on_failure"),
    (lambda: physgrad.wave_packet(torch.ones(2, 2), lbfgs_iterations=0), ValueError, "lbfgs_iterations"),
    (lambda: physgrad.wave_packet(torch.tensor([[1.0, math.nan]])), RuntimeError, "params[0][1] = nan"),
    (lambda: physgrad.wave_packet_fit(torch.ones(2, 100)), ValueError, "target must be [B, samples] = [B, 256]"),
    (lambda: physgrad.wave_packet_fit(torch.ones(2, 256), lower=(25.6, 5.0)), ValueError, "lower must be below upper"),
    (lambda: physgrad.wave_packet_fit(torch.ones(2, 256), initial=(1.0, 2.0, 3.0)), ValueError,
     "initial must be two finite numbers"),
    (lambda: physgrad.wave_packet_fit(torch.ones(2, 256), max_iterations=0), ValueError, "max_iterations"),
    (lambda: physgrad.wave_packet_fit(torch.full((1, 256), math.inf)), RuntimeError, "target[0][0] = inf"),
])
def test_bad_input_is_a_clear_python_error(bad, error, words):
    with pytest.raises(error) as info:
        bad()
    assert words in str(info.value)
    assert physgrad.wave_packet(TRUTH).isfinite().all()  # still usable afterwards


def test_incoming_gradient_of_the_wrong_shape_is_an_error():
    y = physgrad.wave_packet(TRUTH)
    with pytest.raises(ValueError, match=r"grad_y must be \[3, 256\]"):
        torch.ops.physgrad.wave_packet_backward(torch.ones(3, 255, dtype=torch.float64), TRUTH, y, "newton", 1.0,
                                                256, 4.0, 20.0, 32, "raise")


class NetThenWavePacket(torch.nn.Module):
    """A linear map from a signal summary to (xi0, A), offset by the paper's initial guess."""

    def __init__(self, grad_mode: str) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 2, dtype=torch.float64)
        self.physics = physgrad.nn.WavePacket(grad_mode=grad_mode)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        offset = torch.tensor([128.0, 2.0], dtype=features.dtype)
        return self.physics(self.net(features) + offset)


def weight_gradient(model, features, target):
    model.zero_grad()
    physgrad.losses.l2(model(features), target).backward()
    return model.net.weight.grad.clone()


def test_scripted_module_round_trip_in_a_new_process(tmp_path):
    features = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    target = physgrad.wave_packet(torch.tensor([[126.0, 2.2], [131.0, 1.8], [129.0, 2.4]], dtype=torch.float64))
    for mode in ("adjoint", "newton", "physical", "lbfgs"):
        torch.manual_seed(0)
        eager = NetThenWavePacket(mode)
        scripted = torch.jit.script(eager)
        expected = weight_gradient(eager, features, target)
        torch.testing.assert_close(weight_gradient(scripted, features, target), expected)
    torch.manual_seed(0)
    model = NetThenWavePacket("physical")
    torch.jit.save(torch.jit.script(model), str(tmp_path / "model.pt"))
    torch.save((features, target), tmp_path / "data.pt")
    expected = weight_gradient(model, features, target)
    program = f"""
import torch, physgrad
model = torch.jit.load({str(tmp_path / 'model.pt')!r})
features, target = torch.load({str(tmp_path / 'data.pt')!r})
physgrad.losses.l2(model(features), target).backward()
torch.save(model.net.weight.grad, {str(tmp_path / 'grad.pt')!r})
"""
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY / "python"))
    subprocess.run([sys.executable, "-c", program], check=True, env=environment, timeout=120)
    torch.testing.assert_close(torch.load(tmp_path / "grad.pt"), expected)
