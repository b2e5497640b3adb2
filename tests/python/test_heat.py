"""physgrad.heat against a numpy FFT reference, the gradient modes, modules, TorchScript, errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import physgrad

REPOSITORY = Path(__file__).resolve().parents[2]


def random_grid(batch=2, ny=9, nx=7, dtype=torch.float64, seed=0):
    return torch.randn(batch, ny, nx, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def exponent(ny, nx, nu_t, spacing=(1.0, 1.0)):
    """|k|^2 nu_t per FFT bin, k = 2 pi fftfreq(n, h) (numpy's full-spectrum layout)."""
    ky = 2 * np.pi * np.fft.fftfreq(ny, spacing[0])
    kx = 2 * np.pi * np.fft.fftfreq(nx, spacing[1])
    return (ky[:, None] ** 2 + kx[None, :] ** 2) * nu_t


def diffuse_reference(x, nu_t, spacing=(1.0, 1.0)):
    """y = F^-1(F(x) exp(-|k|^2 nu_t)) over the last two axes, with numpy."""
    x = np.asarray(x, dtype=np.float64)
    return np.real(np.fft.ifft2(np.fft.fft2(x) * np.exp(-exponent(*x.shape[-2:], nu_t, spacing))))


def smooth_field(batch, ny, nx, amplitude, phase=0.0):
    """A few of the lowest Fourier modes, different per sample; [batch, ny, nx] float64."""
    j, i = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    a, b = 2 * np.pi * i / nx, 2 * np.pi * j / ny
    fields = [0.3 + np.cos(a + phase + s) - 0.5 * np.sin(2 * b - s) + 0.4 * np.cos(a + b + phase)
              + 0.2 * np.sin(2 * a - b + s) for s in range(batch)]
    return torch.tensor(amplitude * np.stack(fields), dtype=torch.float64)


# ---- forward ------------------------------------------------------------------

@pytest.mark.parametrize("ny, nx", [(7, 9), (8, 6), (5, 10), (1, 6), (64, 64)])
@pytest.mark.parametrize("nu_t, spacing", [(0.9, (0.7, 1.3)), (8.0, (1.0, 1.0)), (3.0, (2.0, 0.5))])
def test_forward_matches_numpy_fft(ny, nx, nu_t, spacing):
    x = random_grid(batch=3, ny=ny, nx=nx, seed=ny * nx)
    y = physgrad.heat(x, nu_t=nu_t, spacing=spacing)
    np.testing.assert_allclose(y.numpy(), diffuse_reference(x.numpy(), nu_t, spacing), rtol=0, atol=1e-13)


def test_mean_is_preserved_and_high_frequencies_decay():
    x = random_grid(batch=4, ny=64, nx=64, seed=1)
    y = physgrad.heat(x)
    torch.testing.assert_close(y.mean(dim=(1, 2)), x.mean(dim=(1, 2)), rtol=0, atol=1e-15)
    assert (y.std(dim=(1, 2)) < 0.2 * x.std(dim=(1, 2))).all()


def test_zero_nu_t_is_the_identity():
    x = random_grid(ny=6, nx=5)
    torch.testing.assert_close(physgrad.heat(x, nu_t=0.0), x, rtol=0, atol=1e-15)


def test_float32_in_float32_out_and_channel_dim_kept():
    x = random_grid(dtype=torch.float32).unsqueeze(1).requires_grad_()
    y = physgrad.heat(x, nu_t=1.0)
    assert y.dtype == torch.float32 and y.shape == x.shape
    np.testing.assert_allclose(y.detach().numpy(), physgrad.heat(x.detach().double(), nu_t=1.0).numpy(),
                               rtol=1e-5, atol=1e-6)
    for mode in ("adjoint", "physical", "lbfgs"):
        x.grad = None
        physgrad.heat(x, nu_t=1.0, grad_mode=mode, lbfgs_iterations=2).sum().backward()
        assert x.grad.dtype == torch.float32 and x.grad.shape == x.shape
        x64 = x.detach().double().requires_grad_()
        physgrad.heat(x64, nu_t=1.0, grad_mode=mode, lbfgs_iterations=2).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), x64.grad.numpy(), rtol=1e-5, atol=1e-6 * x64.grad.abs().max().item())


def test_empty_batch_gives_empty_result_and_gradient():
    for mode in ("adjoint", "physical", "lbfgs"):
        x = torch.zeros(0, 4, 5, dtype=torch.float64, requires_grad=True)
        y = physgrad.heat(x, grad_mode=mode)
        assert y.shape == (0, 4, 5)
        y.sum().backward()
        assert x.grad.shape == (0, 4, 5)


def test_solve_stats_describe_the_exact_forward_and_warn_mode_is_silent(recwarn):
    physgrad.heat(random_grid(batch=3), on_failure="warn")
    stats = physgrad.solve_stats("heat")
    assert stats.phase == "forward" and stats.converged == [True] * 3 and stats.iterations == [0] * 3
    assert not [w for w in recwarn if "physgrad" in str(w.message)]


# ---- misaligned and strided storage ---------------------------------------------

def offset_copy(tensor):
    """`tensor`'s values in storage that starts one element (8 bytes) past an allocation."""
    storage = torch.empty(1 + tensor.numel(), dtype=tensor.dtype)
    view = storage[1:].view(tensor.shape)
    view.copy_(tensor)
    assert view.storage_offset() == 1 and view.is_contiguous()
    return view


def strided_copy(tensor):
    """`tensor`'s values as a non-contiguous slice of a larger tensor."""
    b, ny, nx = tensor.shape
    big = torch.zeros(b, 2 * ny, nx + 3, dtype=tensor.dtype)
    view = big[:, ::2, 1:nx + 1]
    view.copy_(tensor)
    assert not view.is_contiguous()
    return view


@pytest.mark.parametrize("layout", [offset_copy, strided_copy])
@pytest.mark.parametrize("mode", ["adjoint", "physical", "lbfgs"])
def test_misaligned_and_strided_inputs_give_the_same_result(layout, mode):
    x, g = random_grid(batch=3, ny=10, nx=12, seed=2), random_grid(batch=3, ny=10, nx=12, seed=3)

    def run(x_in, g_in):
        leaf = x_in.clone().requires_grad_() if x_in.is_contiguous() else x_in.requires_grad_()
        y = physgrad.heat(leaf, nu_t=2.0, grad_mode=mode, lbfgs_iterations=4)
        y.backward(g_in)
        return y.detach(), leaf.grad

    y_aligned, grad_aligned = run(x, g)
    y_other, grad_other = run(layout(x), layout(g))
    torch.testing.assert_close(y_other, y_aligned, rtol=0, atol=0)
    torch.testing.assert_close(grad_other, grad_aligned, rtol=0, atol=0)
    # The backward op called directly, with misaligned arguments throughout.
    direct = torch.ops.physgrad.heat_backward(layout(g), layout(x), layout(y_aligned), 2.0, mode, 1.0,
                                              [1.0, 1.0], 4, "raise")
    torch.testing.assert_close(direct, grad_aligned, rtol=0, atol=0)


# ---- gradient modes --------------------------------------------------------------

def test_adjoint_passes_gradcheck():
    x = random_grid(batch=2, ny=5, nx=6).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v: physgrad.heat(v, nu_t=0.7, grad_mode="adjoint", spacing=(0.8, 1.2)), (x,))
    x4 = random_grid(batch=1, ny=4, nx=3, seed=1).unsqueeze(1).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: physgrad.heat(v, nu_t=0.3, grad_mode="adjoint"), (x4,))


def test_adjoint_is_the_forward_applied_to_the_incoming_gradient():
    x, g = random_grid(ny=8, nx=8).requires_grad_(), random_grid(ny=8, nx=8, seed=1)
    physgrad.heat(x, nu_t=1.5, grad_mode="adjoint").backward(g)
    torch.testing.assert_close(x.grad, physgrad.heat(g, nu_t=1.5), rtol=0, atol=1e-15)


def test_physical_step_with_l2_loss_recovers_a_clean_smooth_step():
    x_star = smooth_field(2, 64, 64, 1.0)
    y_star = physgrad.heat(x_star)
    x = (x_star + smooth_field(2, 64, 64, 1e-2, phase=0.7)).requires_grad_()
    physgrad.losses.l2(physgrad.heat(x, grad_mode="physical"), y_star).backward()
    x_new = x.detach() - x.grad
    before, after = (x.detach() - x_star).norm(), (x_new - x_star).norm()
    assert after < 1e-10 * before, (after, before)
    # The low frequencies (amplified by less than e^4) of the step are exact.
    low = exponent(64, 64, 8.0) < 4.0
    spectrum_new, spectrum_star = np.fft.fft2(x_new.numpy()), np.fft.fft2(x_star.numpy())
    np.testing.assert_allclose(spectrum_new[:, low], spectrum_star[:, low], rtol=0, atol=1e-12 * 64 * 64)
    torch.testing.assert_close(physgrad.heat(x_new), y_star, rtol=0, atol=1e-10)


def test_physical_mode_is_finite_on_noisy_data_and_damps_noise_only_frequencies():
    nu_t, n = 8.0, 64
    x_star = smooth_field(2, n, n, 0.5)
    noise = 1e-3 * random_grid(batch=2, ny=n, nx=n, seed=4)
    y_noisy = physgrad.heat(x_star) + noise
    x = torch.zeros_like(x_star, requires_grad=True)
    physgrad.losses.l2(physgrad.heat(x, nu_t=nu_t), y_noisy).backward()
    step = x.detach() - x.grad  # the stable inverse of y_noisy, since P(0) = 0
    assert step.isfinite().all()

    with np.errstate(over="ignore", invalid="ignore"):
        exact = np.real(np.fft.ifft2(np.fft.fft2(y_noisy.numpy()) * np.exp(exponent(n, n, nu_t))))
    assert not np.all(np.abs(exact) < 1e30), "the exact inverse of noisy data should explode"
    # Bounded, though not small: the default noise model (noise_relative 1e-6) takes the
    # noise in frequencies diffused by less than ~e^-14.6 for signal and un-diffuses it.
    assert step.abs().max() < 1e4

    # Where the clean signal is diffused by e^-30 or more only noise is left: never amplified.
    gain = np.abs(np.fft.fft2(step.numpy())) / np.abs(np.fft.fft2(y_noisy.numpy()))
    noise_only = exponent(n, n, nu_t) > 30.0
    assert noise_only.sum() > 2000
    assert (gain[:, noise_only] <= 1.0 + 1e-9).all()
    assert np.median(gain[:, noise_only]) < 1e-6
    # The lowest frequencies carry the signal and are un-diffused.
    lowest = exponent(n, n, nu_t) < 1.0
    lowest[0, 0] = False
    np.testing.assert_allclose(np.fft.fft2(step.numpy())[:, lowest], np.fft.fft2(x_star.numpy())[:, lowest],
                               rtol=0, atol=1e-2 * np.abs(np.fft.fft2(x_star.numpy())).max())


def test_physical_mode_scales_the_step_with_y_step():
    x, g = random_grid(ny=8, nx=8).requires_grad_(), 1e-3 * smooth_field(2, 8, 8, 1.0)
    physgrad.heat(x, nu_t=0.5, y_step=0.0).backward(g)
    assert (x.grad == 0).all()
    x.grad = None
    physgrad.heat(x, nu_t=0.5, y_step=0.25).backward(g)
    direct = torch.ops.physgrad.heat_backward(0.25 * g, x.detach(), physgrad.heat(x.detach(), nu_t=0.5), 0.5,
                                              "physical", 1.0, [1.0, 1.0], 32, "raise")
    torch.testing.assert_close(x.grad, direct, rtol=0, atol=0)


def test_lbfgs_mode_lowers_the_objective_as_iterations_grow():
    x_star, x = random_grid(seed=5, ny=8, nx=8), random_grid(seed=6, ny=8, nx=8)
    y_star = physgrad.heat(x_star, nu_t=0.5)
    objectives = []
    for iterations in (1, 4, 32):
        xi = x.clone().requires_grad_()
        physgrad.losses.l2(physgrad.heat(xi, nu_t=0.5, grad_mode="lbfgs", lbfgs_iterations=iterations),
                           y_star).backward()
        stats = physgrad.solve_stats("heat")
        assert stats.phase == "lbfgs" and len(stats.iterations) == 2
        assert all(1 <= it <= iterations for it in stats.iterations)
        objectives.append(physgrad.losses.l2(physgrad.heat(x - xi.grad, nu_t=0.5), y_star).item())
    assert objectives[0] > objectives[1] > objectives[2]
    # An ill-conditioned least-squares problem (condition ~e^20 here): L-BFGS gets most of the way.
    assert objectives[2] < 1e-2 * physgrad.losses.l2(physgrad.heat(x, nu_t=0.5), y_star).item()


def test_module_mode_can_change_and_context_manager_overrides_it():
    layer = physgrad.nn.Heat(nu_t=2.0, grad_mode="physical")
    x = random_grid(ny=8, nx=8).requires_grad_()
    g = 1e-2 * smooth_field(2, 8, 8, 1.0)

    def gradient():
        x.grad = None
        layer(x).backward(g)
        return x.grad.clone()

    physical = gradient()
    with physgrad.grad_mode("adjoint"):
        in_block = gradient()
    torch.testing.assert_close(in_block, physgrad.heat(g, nu_t=2.0))
    assert not torch.allclose(physical, in_block)
    torch.testing.assert_close(gradient(), physical)  # the block has ended
    layer.grad_mode = "adjoint"
    torch.testing.assert_close(gradient(), in_block)
    with physgrad.grad_mode("physical"):
        torch.testing.assert_close(gradient(), physical)


# ---- TorchScript ------------------------------------------------------------------

class NetThenHeat(torch.nn.Module):
    def __init__(self, grad_mode: str) -> None:
        super().__init__()
        self.net = torch.nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular", dtype=torch.float64)
        self.physics = physgrad.nn.Heat(nu_t=1.0, grad_mode=grad_mode, spacing=(1.0, 0.9), lbfgs_iterations=8)

    def forward(self, y_star: torch.Tensor) -> torch.Tensor:
        return self.physics(self.net(y_star))


def weight_gradient(model: torch.nn.Module, y_star: torch.Tensor) -> torch.Tensor:
    model.zero_grad()
    physgrad.losses.l2(model(y_star), y_star).backward()
    return model.net.weight.grad.clone()


def test_scripted_module_matches_eager_in_every_mode():
    y_star = torch.randn(2, 1, 8, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    for mode in ("adjoint", "physical", "lbfgs"):
        torch.manual_seed(0)
        eager = NetThenHeat(mode)
        scripted = torch.jit.script(eager)
        torch.testing.assert_close(scripted(y_star), eager(y_star))
        torch.testing.assert_close(weight_gradient(scripted, y_star), weight_gradient(eager, y_star))


def test_saved_model_loads_and_backpropagates_in_a_new_process(tmp_path):
    torch.manual_seed(0)
    model = NetThenHeat("physical")
    y_star = torch.randn(2, 1, 8, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    torch.jit.save(torch.jit.script(model), str(tmp_path / "model.pt"))
    torch.save(y_star, tmp_path / "y_star.pt")
    expected = weight_gradient(model, y_star)
    program = f"""
import torch, physgrad
model = torch.jit.load({str(tmp_path / 'model.pt')!r})
y_star = torch.load({str(tmp_path / 'y_star.pt')!r})
physgrad.losses.l2(model(y_star), y_star).backward()
torch.save(model.net.weight.grad, {str(tmp_path / 'grad.pt')!r})
"""
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY / "python"))
    subprocess.run([sys.executable, "-c", program], check=True, env=environment, timeout=120)
    torch.testing.assert_close(torch.load(tmp_path / "grad.pt"), expected)


# ---- errors ------------------------------------------------------------------------

def backward_of(mode, g):
    def run():
        x = torch.zeros(1, 4, 4, dtype=torch.float64, requires_grad=True)
        physgrad.heat(x, grad_mode=mode).backward(g)
    return run


NAN_GRID = torch.full((1, 4, 4), float("nan"), dtype=torch.float64)


@pytest.mark.parametrize("bad, error, words", [
    (lambda: physgrad.heat(torch.zeros(1, 4, 4, dtype=torch.int64)), TypeError, "x must be float32 or float64"),
    (lambda: physgrad.heat(torch.zeros(1, 4, 4, dtype=torch.float16)), TypeError, "x must be float32 or float64"),
    (lambda: physgrad.heat(torch.zeros(4, 4)), ValueError, "x must have 3 or 4 or 5 dimensions"),
    (lambda: physgrad.heat(torch.zeros(1, 2, 2, 4, 4)), ValueError, "x must be [B, 1, nz, ny, nx]"),
    (lambda: physgrad.heat(torch.zeros(1, 0, 4)), ValueError, "x must have at least one cell"),
    (lambda: physgrad.heat(torch.zeros(1, 4, 4), grad_mode="newton"), ValueError,
     "grad_mode 'newton'; this op offers 'adjoint', 'physical', 'lbfgs'"),
    (lambda: physgrad.heat(torch.zeros(1, 4, 4), grad_mode="sideways"), ValueError, "unknown grad_mode"),
    (lambda: physgrad.heat(torch.zeros(1, 4, 4), nu_t=-1.0), ValueError, "nu_t must be finite and >= 0"),
    (lambda: physgrad.heat(torch.zeros(1, 4, 4), nu_t=float("nan")), ValueError, "nu_t must be finite"),
    (lambda: physgrad.heat(torch.zeros(1, 4, 4), nu_t=float("inf")), ValueError, "nu_t must be finite"),
    (lambda: physgrad.heat(torch.zeros(1, 4, 4), nu_t=1e308), ValueError, "nu_t = 1e+308 overflows"),
    (lambda: physgrad.heat(torch.zeros(1, 4, 4), nu_t="8"), RuntimeError, "nu_t"),
    (lambda: physgrad.heat(torch.zeros(1, 4, 4), spacing=(0.0, 1.0)), ValueError, "spacing must be positive"),
    (lambda: physgrad.heat(torch.zeros(1, 4, 4), spacing=(1.0, -2.0)), ValueError, "spacing must be positive"),
    (lambda: physgrad.heat(torch.zeros(1, 4, 4), spacing=(1.0, float("nan"))), ValueError, "spacing"),
    (lambda: torch.ops.physgrad.heat(torch.zeros(1, 4, 4), 8.0, "physical", 1.0, [1.0, 1.0, 1.0], 32, "raise"),
     ValueError, "spacing must be [dy, dx]"),
    (lambda: physgrad.heat(torch.zeros(1, 4, 4), y_step=float("inf")), ValueError, "y_step must be finite"),
    (lambda: physgrad.heat(torch.zeros(1, 4, 4), lbfgs_iterations=0), ValueError, "lbfgs_iterations must be"),
    (lambda: physgrad.heat(torch.zeros(1, 4, 4), on_failure="ignore"), ValueError, "on_failure must be"),
    (lambda: physgrad.heat(NAN_GRID), RuntimeError, "heat: x: CPhysHeatForward: input value 0 (sample 0) is nan"),
    (lambda: physgrad.heat(torch.full((2, 3, 3), float("inf"))), RuntimeError, "heat: x:"),
    (backward_of("physical", NAN_GRID), RuntimeError, "heat: grad_y[0][0][0] = nan is not finite"),
    (backward_of("adjoint", NAN_GRID), RuntimeError, "heat: grad_y:"),
    (lambda: torch.ops.physgrad.heat_backward(torch.zeros(1, 4, 5), torch.zeros(1, 4, 4), torch.zeros(1, 4, 4),
                                              8.0, "physical", 1.0, [1.0, 1.0], 32, "raise"),
     ValueError, "grad_y has shape [1, 4, 5] but x has shape [1, 4, 4]"),
    (lambda: torch.ops.physgrad.heat_backward(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), torch.zeros(1, 2, 4),
                                              8.0, "lbfgs", 1.0, [1.0, 1.0], 32, "raise"),
     ValueError, "y has shape [1, 2, 4] but x has shape [1, 4, 4]"),
])
def test_bad_input_is_a_clear_python_error(bad, error, words):
    with pytest.raises(error) as info:
        bad()
    assert words in str(info.value)
    assert physgrad.heat(torch.ones(1, 3, 3)).isfinite().all()  # still usable afterwards


def test_double_backward_is_refused():
    x = random_grid(ny=4, nx=4).requires_grad_()
    (grad,) = torch.autograd.grad(physgrad.heat(x, grad_mode="adjoint").sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        grad.sum().backward()
