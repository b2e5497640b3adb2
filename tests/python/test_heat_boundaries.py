"""physgrad.heat with Dirichlet, Neumann and periodic boundaries (per axis), on
2-D and 3-D grids, in every mode, against an explicit eigenfunction expansion
built here with numpy (no FFT) and on single eigenfunctions."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import physgrad

F64 = torch.float64
NAMES = ("dirichlet", "neumann", "periodic")


def axis_basis(n: int, h: float, boundary: str):
    """Orthonormal real eigenfunctions of the continuous Laplacian sampled on n
    cells (columns) and their eigenvalues k^2: Dirichlet boundary nodes one
    spacing outside, a Neumann wall half a spacing outside, periodic with period n h."""
    j = np.arange(n)
    columns, k2 = [], []
    for p in range(n):
        if boundary == "dirichlet":
            columns.append(np.sin(np.pi * (p + 1) * (j + 1) / (n + 1)))
            k2.append((np.pi * (p + 1) / ((n + 1) * h)) ** 2)
        elif boundary == "neumann":
            columns.append(np.cos(np.pi * p * (j + 0.5) / n))
            k2.append((np.pi * p / (n * h)) ** 2)
        else:
            q = min(p, n - p)
            wave = np.cos if p <= n - p else np.sin
            columns.append(wave(2 * np.pi * q * j / n))
            k2.append((2 * np.pi * q / (n * h)) ** 2)
    basis = np.stack(columns, axis=1)
    return basis / np.linalg.norm(basis, axis=0), np.array(k2)


def axis_operator(n, h, boundary, nu_t):
    """exp(nu_t laplace) along one axis: Q diag(exp(-k^2 nu_t)) Q^T."""
    basis, k2 = axis_basis(n, h, boundary)
    assert np.allclose(basis.T @ basis, np.eye(n), atol=1e-12)  # orthonormal
    return basis @ np.diag(np.exp(-k2 * nu_t)) @ basis.T


def reference(x: np.ndarray, nu_t, spacing, boundary) -> np.ndarray:
    """The heat kernel applied axis by axis (it factorizes: exp of a sum of axis terms)."""
    y = x.copy()
    dims = x.ndim - 1
    for axis in range(dims):
        operator = axis_operator(x.shape[axis + 1], spacing[axis], boundary[axis], nu_t)
        y = np.moveaxis(np.tensordot(operator, np.moveaxis(y, axis + 1, 0), axes=(1, 0)), 0, axis + 1)
    return y


def random_grid(shape, batch=2, seed=0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((batch, *shape)))


CASES_2D = list(itertools.product(NAMES, NAMES))
CASES_3D = [("dirichlet",) * 3, ("neumann",) * 3, ("dirichlet", "neumann", "periodic"),
            ("periodic", "dirichlet", "neumann"), ("neumann", "periodic", "periodic")]


@pytest.mark.parametrize("boundary", CASES_2D)
@pytest.mark.parametrize("shape, spacing", [((6, 9), (0.7, 1.3)), ((8, 5), (1.0, 1.0)), ((1, 7), (2.0, 0.5))])
def test_forward_2d_matches_the_eigenfunction_expansion(boundary, shape, spacing):
    x = random_grid(shape)
    y = physgrad.heat(x, nu_t=0.9, spacing=spacing, boundary=boundary)
    np.testing.assert_allclose(y.numpy(), reference(x.numpy(), 0.9, spacing, boundary), rtol=0, atol=1e-12)


@pytest.mark.parametrize("boundary", CASES_3D)
@pytest.mark.parametrize("shape", [(4, 5, 6), (3, 10, 17)])  # the sine transform's blocks of 8 lines: whole
def test_forward_3d_matches_the_eigenfunction_expansion(boundary, shape):  # ones across rows, partial ones
    spacing = (0.8, 1.1, 1.0)
    x = random_grid(shape)
    y = physgrad.heat(x, nu_t=1.3, spacing=spacing, boundary=",".join(boundary))
    np.testing.assert_allclose(y.numpy(), reference(x.numpy(), 1.3, spacing, boundary), rtol=0, atol=1e-12)
    # [B, 1, nz, ny, nx] is the same grid
    y5 = physgrad.heat(x.unsqueeze(1), nu_t=1.3, spacing=spacing, boundary=boundary)
    assert y5.shape == (2, 1, *shape)
    torch.testing.assert_close(y5.squeeze(1), y, rtol=0, atol=0)


@pytest.mark.parametrize("boundary, mode", [("dirichlet", 3), ("neumann", 2), ("neumann", 0)])
def test_a_single_eigenfunction_decays_by_exp_of_its_continuous_eigenvalue(boundary, mode):
    ny, nx, h, nu_t = 12, 10, 0.9, 2.5
    basis_y, k2_y = axis_basis(ny, h, boundary)
    basis_x, k2_x = axis_basis(nx, h, boundary)
    x = np.outer(basis_y[:, mode], basis_x[:, mode + 1])[None]
    y = physgrad.heat(torch.from_numpy(x), nu_t=nu_t, spacing=h, boundary=boundary).numpy()
    np.testing.assert_allclose(y, x * math.exp(-(k2_y[mode] + k2_x[mode + 1]) * nu_t), rtol=0, atol=1e-14)


def test_a_3d_dirichlet_mode_decays_analytically():
    nz, ny, nx, nu_t = 5, 6, 7, 1.7
    j = [np.arange(n) for n in (nz, ny, nx)]
    x = (np.sin(np.pi * 2 * (j[0][:, None, None] + 1) / (nz + 1)) * np.sin(np.pi * (j[1][None, :, None] + 1) / (ny + 1))
         * np.sin(np.pi * 3 * (j[2][None, None, :] + 1) / (nx + 1)))[None]
    k2 = (np.pi * 2 / (nz + 1)) ** 2 + (np.pi / (ny + 1)) ** 2 + (np.pi * 3 / (nx + 1)) ** 2
    y = physgrad.heat(torch.from_numpy(x), nu_t=nu_t, boundary="dirichlet").numpy()
    np.testing.assert_allclose(y, x * math.exp(-k2 * nu_t), rtol=0, atol=1e-14)


def test_neumann_conserves_the_mean_and_dirichlet_loses_it():
    x = random_grid((7, 6), batch=1) + 3.0
    y = physgrad.heat(x, nu_t=4.0, boundary="neumann")
    assert abs(float(y.mean() - x.mean())) < 1e-13
    assert float(physgrad.heat(x, nu_t=4.0, boundary="dirichlet").mean()) < float(x.mean()) - 0.1


def test_periodic_spellings_are_bitwise_the_default():
    x = random_grid((9, 8))
    default = physgrad.heat(x, nu_t=3.0, spacing=(0.9, 1.1))
    for boundary in ("periodic", "periodic,periodic", ("periodic", "periodic")):
        torch.testing.assert_close(physgrad.heat(x, nu_t=3.0, spacing=(0.9, 1.1), boundary=boundary), default,
                                   rtol=0, atol=0)


@pytest.mark.parametrize("boundary", CASES_2D)
def test_adjoint_gradcheck_2d(boundary):
    x = random_grid((4, 5), batch=1).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v: physgrad.heat(v, nu_t=0.6, grad_mode="adjoint", spacing=(0.8, 1.2), boundary=boundary), (x,))


@pytest.mark.parametrize("boundary", CASES_3D)
def test_adjoint_gradcheck_3d(boundary):
    x = random_grid((3, 4, 3), batch=1).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v: physgrad.heat(v, nu_t=0.6, grad_mode="adjoint", spacing=(1.0, 0.8, 1.2), boundary=boundary),
        (x,))


def low_mode(shape, boundary):
    """The product of each axis's lowest non-constant eigenfunction (the lowest for Dirichlet)."""
    grid = np.ones(())
    for n, b in zip(shape, boundary):
        basis, _ = axis_basis(n, 1.0, b)
        grid = np.multiply.outer(grid, basis[:, 0 if b == "dirichlet" else 1])
    return torch.from_numpy(grid[None] * 5.0)


@pytest.mark.parametrize("shape, boundary", [((16, 12), b) for b in CASES_2D]
                         + [((6, 8, 7), b) for b in CASES_3D])
def test_physical_mode_recovers_a_noise_free_mode(shape, boundary):
    target = low_mode(shape, boundary)
    nu_t = 2.0
    y_target = physgrad.heat(target, nu_t=nu_t, boundary=boundary)
    x = torch.zeros_like(target, requires_grad=True)
    loss = 0.5 * (physgrad.heat(x, nu_t=nu_t, grad_mode="physical", boundary=boundary) - y_target).pow(2).sum()
    loss.backward()
    # dL/dy = -P(target); the stable inverse of that step is the exact inverse: x.grad = -target
    np.testing.assert_allclose(x.grad.numpy(), -target.numpy(), rtol=0, atol=1e-9 * float(target.abs().max()))


def mode_grid(shape, boundary, modes):
    """The product of the axes' orthonormal eigenfunctions `modes` (unit norm) and its eigenvalue k^2."""
    grid, k2 = np.ones(()), 0.0
    for n, b, m in zip(shape, boundary, modes):
        basis, eigen = axis_basis(n, 1.0, b)
        grid, k2 = np.multiply.outer(grid, basis[:, m]), k2 + eigen[m]
    return grid, k2


@pytest.mark.parametrize("boundary", [("dirichlet",) * 2, ("neumann",) * 2, ("neumann", "dirichlet"),
                                      ("periodic", "dirichlet"), ("periodic", "periodic")])
def test_physical_mode_inverts_signal_and_damps_noise_on_the_same_scale(boundary):
    # A unit low mode (signal) plus a highest mode 1e-8 its size (below the noise
    # level noise_relative * ||dy|| on the DFT's scale, and far below what a
    # diffused signal could be there): the low mode gets the exact inverse, the
    # high one the forward kernel, for every basis alike.
    nu_t, shape = 6.0, (16, 16)
    low, k2_low = mode_grid(shape, boundary, (1, 1))
    high, k2_high = mode_grid(shape, boundary, (15, 15) if "periodic" not in boundary else (8, 8))
    step = torch.from_numpy((low + 1e-8 * high)[None])
    dx = torch.ops.physgrad.heat_backward(step, step, step, nu_t, "physical", 1.0, [1.0], 32, "raise",
                                          ",".join(boundary)).numpy()[0]
    expect = low * math.exp(k2_low * nu_t) + 1e-8 * high * math.exp(-k2_high * nu_t)
    np.testing.assert_allclose(dx, expect, rtol=0, atol=1e-9 * math.exp(k2_low * nu_t))
    assert np.abs(dx - low * math.exp(k2_low * nu_t)).max() < 1e-12


@pytest.mark.parametrize("shape, boundary", [((8, 6), "dirichlet,neumann"), ((4, 5, 6), "neumann,periodic,dirichlet")])
def test_lbfgs_mode_lowers_the_objective(shape, boundary):
    target = random_grid(shape, batch=2, seed=5)
    y_target = physgrad.heat(target, nu_t=1.0, boundary=boundary)

    def objective(v):
        return 0.5 * (physgrad.heat(v, nu_t=1.0, grad_mode="lbfgs", boundary=boundary, lbfgs_iterations=16)
                      - y_target).pow(2).sum()

    x = torch.zeros_like(target, requires_grad=True)
    before = objective(x)
    before.backward()
    with torch.no_grad():
        after = objective(x - x.grad)
    assert float(after) < 0.1 * float(before)


def test_nn_heat_takes_a_boundary_and_3d_grids():
    x = random_grid((4, 5, 6))
    layer = physgrad.nn.Heat(nu_t=1.0, boundary=("dirichlet", "neumann", "periodic"), spacing=0.9)
    assert layer.boundary == "dirichlet,neumann,periodic"
    torch.testing.assert_close(layer(x), physgrad.heat(x, nu_t=1.0, spacing=0.9, boundary=layer.boundary),
                               rtol=0, atol=0)
    torch.testing.assert_close(torch.jit.script(layer)(x), layer(x), rtol=0, atol=0)
    other = physgrad.nn.Heat()
    other.load_state_dict(layer.state_dict())
    assert other.boundary == layer.boundary and other.spacing == (0.9, 0.9)


@pytest.mark.parametrize("bad, error, words", [
    (lambda: physgrad.heat(torch.zeros(1, 4, 4), boundary="robin"), ValueError,
     "boundary must be 'periodic', 'dirichlet' or 'neumann'"),
    (lambda: physgrad.heat(torch.zeros(1, 4, 4), boundary="dirichlet,neumann,periodic"), ValueError,
     "names 3 axes, but the grid has 2"),
    (lambda: physgrad.heat(torch.zeros(1, 3, 4, 4), boundary="dirichlet,neumann"), ValueError,
     "names 2 axes, but the grid has 3"),
    (lambda: physgrad.heat(torch.zeros(1, 4, 4), boundary=""), ValueError, "boundary must be"),
    (lambda: physgrad.heat(torch.zeros(1, 2, 3, 4, 4)), ValueError, "x must be [B, 1, nz, ny, nx]"),
    (lambda: physgrad.heat(torch.zeros(1, 3, 4, 4), spacing=(1.0, 1.0)), ValueError,
     "spacing must be a number or one per axis"),
    (lambda: torch.ops.physgrad.heat(torch.zeros(1, 3, 4, 4), 8.0, "physical", 1.0, [1.0, 1.0], 32, "raise",
                                     "neumann"), ValueError, "spacing must be [dz, dy, dx] for this 3-D grid"),
    (lambda: physgrad.heat(torch.zeros(1, 3, 0, 4)), ValueError, "at least one cell per axis"),
])
def test_bad_boundaries_and_shapes_are_clear_errors(bad, error, words):
    with pytest.raises(error) as info:
        bad()
    assert words in str(info.value)


def real_basis_stable_inverse(dy, nu_t, boundary):
    """The B.4 rule (docs/heat-inverse.md) on the orthonormal real basis built here, one sample:
    amplitudes on the DFT's scale (orthonormal coefficient * sqrt(cells)), noise scale
    1e-6 ||dy||, signal scale sqrt(cells) exp(-|k|^2 nu_t), action 2 p - 1 unless 1/2 < p < 0.68."""
    bases = [axis_basis(n, 1.0, b) for n, b in zip(dy.shape, boundary)]
    coefficients, exponent = dy, np.zeros(())
    for axis, (basis, k2) in enumerate(bases):
        coefficients = np.moveaxis(np.tensordot(basis.T, np.moveaxis(coefficients, axis, 0), axes=(1, 0)), 0, axis)
        exponent = np.add.outer(exponent, k2 * nu_t)
    amplitude = np.abs(coefficients) * np.sqrt(dy.size)
    noise = 1e-6 * np.linalg.norm(dy)
    signal = np.sqrt(dy.size) * np.exp(-exponent)
    with np.errstate(over="ignore", divide="ignore"):
        log_odds = 0.5 * (amplitude / noise) ** 2 - 0.5 * (amplitude / signal) ** 2
    p = 1.0 / (1.0 + np.exp(-np.clip(log_odds, -700, 700)))
    action = np.where((p <= 0.5) | (p >= 0.68), 2 * p - 1, 0.0)
    result = coefficients * np.exp(action * exponent)
    for axis, (basis, _) in enumerate(bases):
        result = np.moveaxis(np.tensordot(basis, np.moveaxis(result, axis, 0), axes=(1, 0)), 0, axis)
    return result


@pytest.mark.parametrize("boundary", [("dirichlet", "neumann"), ("neumann", "neumann"), ("periodic", "dirichlet"),
                                      ("dirichlet", "periodic", "neumann")])
@pytest.mark.parametrize("size", [1e-3, 1.0, 1e4])
def test_physical_mode_matches_a_transcription_of_the_rule_near_the_noise_level(boundary, size):
    # A smooth part plus, in every coefficient, a part of 0.3 .. 6 times the noise
    # scale: the coefficients whose decisions are neither 0 nor 1.
    shape = (12, 10) if len(boundary) == 2 else (5, 6, 7)
    rng = np.random.default_rng(7)
    smooth = low_mode(shape, boundary).numpy()[0] * size / 5.0
    noise = rng.standard_normal(shape) * np.linalg.norm(smooth) * 1e-6 * rng.uniform(0.3, 6.0, shape)
    dy = smooth + noise
    nu_t = 1.5
    expect = real_basis_stable_inverse(dy, nu_t, boundary)
    dx = torch.ops.physgrad.heat_backward(torch.from_numpy(dy[None]), torch.zeros(1, *shape, dtype=F64),
                                          torch.zeros(1, *shape, dtype=F64), nu_t, "physical", 1.0, [1.0], 32,
                                          "raise", ",".join(boundary)).numpy()[0]
    np.testing.assert_allclose(dx, expect, rtol=0, atol=1e-8 * np.abs(expect).max())
    # the decisions matter here: the exact inverse and the unchanged step are both far off
    assert np.abs(dy - expect).max() > 1e-4 * np.abs(expect).max()


@pytest.mark.parametrize("scale", [1e-300, 1e-150, 1e150, 1e250])
def test_physical_mode_is_finite_for_extreme_steps_on_a_real_basis(scale):
    step = random_grid((8, 9), batch=1, seed=9) * scale
    dx = torch.ops.physgrad.heat_backward(step, step, step, 8.0, "physical", 1.0, [1.0], 32, "raise",
                                          "dirichlet,neumann")
    assert dx.isfinite().all()
