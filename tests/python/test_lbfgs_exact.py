"""The `lbfgs` gradient modes and the wave-packet fitter against exact answers.

Two kinds of checks:

* Exact minimizers.  On well-conditioned problems whose minimizer is known
  independently (a reachable target of a linear op: the exact solution of the
  linear system from scipy / numpy; a noiseless wave packet: its parameters; a
  noisy one: the least-squares fit by variable projection, the amplitude being
  linear least squares for a given position), enough iterations must land on
  it to a tight tolerance.  This checks the target ``y - y_step * g``, the sign
  of ``dx = x - x_n``, the per-sample handling and that the minimizer converges.

* The first step.  The first L-BFGS iteration has no curvature pairs yet: it is
  a line search along the steepest-descent direction ``-J^T (P(x) - target)``.
  So after one iteration ``dx`` must be a positive multiple of ``J^T (y_step g)``
  computed independently (scipy, numpy FFT, the closed form of the packet, the
  torch reference fluid).  This is what catches a wrong adjoint: a minimizer fed
  a gradient that is wrong by a factor in one component (e.g. the packet's
  position derivative without its factor 2) still converges to the same
  minimizer, since the rescaled gradient vanishes where the true one does and
  quasi-Newton learns the scaling -- no exact-minimizer test can see that; the
  direction of the first step does.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch
from scipy.optimize import brentq

import physgrad

REPOSITORY = Path(__file__).resolve().parents[2]


def random(shape, seed):
    return torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def lbfgs_step(op, x, g, **options):
    """x.grad of op(x, grad_mode="lbfgs", **options) for the incoming gradient g."""
    x = x.clone().requires_grad_()
    op(x, grad_mode="lbfgs", **options).backward(g)
    return x.grad


def assert_positive_multiple(dx, direction, rtol):
    """Per sample: dx = c * direction with c > 0, to rtol of |dx|."""
    for d, v in zip(dx.reshape(len(dx), -1).numpy(), direction.reshape(len(direction), -1).numpy()):
        c = d @ v / (v @ v)
        assert c > 0, c
        assert np.linalg.norm(d - c * v) <= rtol * np.linalg.norm(d), np.linalg.norm(d - c * v) / np.linalg.norm(d)


# ---- Poisson: y = laplace^-1 x, so the reachable target t has the exact preimage laplace(t) -------------------

POISSON = dict(shape=(4, 3), spacing=(0.8, 1.1), rtol=1e-12)  # condition of the least-squares Hessian: 61


def poisson(x, **options):
    return physgrad.poisson(x, spacing=POISSON["spacing"], rtol=POISSON["rtol"], **options)


def test_poisson_lbfgs_lands_on_the_exact_solution(laplacian):
    x, g = random((2, *POISSON["shape"]), 0), random((2, *POISSON["shape"]), 1)
    y_step = 0.7
    target = (poisson(x) - y_step * g).numpy()
    matrix = laplacian(*POISSON["shape"], *POISSON["spacing"])
    exact = np.stack([(matrix @ t.ravel()).reshape(POISSON["shape"]) for t in target])
    dx = lbfgs_step(poisson, x, g, y_step=y_step, lbfgs_iterations=300)
    np.testing.assert_allclose((x - dx).numpy(), exact, rtol=0, atol=1e-9 * np.abs(exact).max())
    assert physgrad.solve_stats("poisson").phase == "lbfgs"


def test_poisson_lbfgs_first_step_is_along_the_true_gradient(laplacian):
    x, g = random((2, *POISSON["shape"]), 2), random((2, *POISSON["shape"]), 3)
    matrix = laplacian(*POISSON["shape"], *POISSON["spacing"]).tocsc()
    # J^T (y_step g) with J = laplace^-1, symmetric
    gradient = np.stack([spla.spsolve(matrix, 0.7 * v.ravel()) for v in g.numpy()])
    dx = lbfgs_step(poisson, x, g, y_step=0.7, lbfgs_iterations=1)
    assert_positive_multiple(dx, torch.from_numpy(gradient), 1e-10)


# ---- heat: y = F^-1(F(x) exp(-|k|^2 nu_t)); a small nu_t keeps the problem well conditioned -------------------

HEAT = dict(shape=(6, 5), spacing=(0.9, 1.2), nu_t=0.05)  # Hessian condition exp(2 max |k|^2 nu_t) ~ 6


def heat_filter(v, sign):
    """F^-1(F(v) exp(sign |k|^2 nu_t)) with numpy, over the last two axes."""
    ky = 2 * np.pi * np.fft.fftfreq(HEAT["shape"][0], HEAT["spacing"][0])
    kx = 2 * np.pi * np.fft.fftfreq(HEAT["shape"][1], HEAT["spacing"][1])
    kernel = np.exp(sign * (ky[:, None] ** 2 + kx[None, :] ** 2) * HEAT["nu_t"])
    return np.real(np.fft.ifft2(np.fft.fft2(np.asarray(v)) * kernel))


def heat(x, **options):
    return physgrad.heat(x, nu_t=HEAT["nu_t"], spacing=HEAT["spacing"], **options)


def test_heat_lbfgs_lands_on_the_exact_solution():
    x, g = random((2, *HEAT["shape"]), 4), random((2, *HEAT["shape"]), 5)
    y_step = 0.7
    exact = heat_filter((heat(x) - y_step * g).numpy(), +1)
    dx = lbfgs_step(heat, x, g, y_step=y_step, lbfgs_iterations=300)
    np.testing.assert_allclose((x - dx).numpy(), exact, rtol=0, atol=1e-9 * np.abs(exact).max())


def test_heat_lbfgs_first_step_is_along_the_true_gradient():
    x, g = random((2, *HEAT["shape"]), 6), random((2, *HEAT["shape"]), 7)
    gradient = heat_filter(0.7 * g.numpy(), -1)  # the diffusion is symmetric: J^T = P
    dx = lbfgs_step(heat, x, g, y_step=0.7, lbfgs_iterations=1)
    assert_positive_multiple(dx, torch.from_numpy(gradient), 1e-10)


# ---- wave packet: y = A sin(f xi) exp(-(xi - xi0)^2 / (2 sigma^2)), f = 4, sigma = 20, 256 samples ---------------

XI = np.arange(256, dtype=np.float64)
SIGMA = 20.0
TRUTH = np.array([[100.3, 2.7], [180.0, 1.2], [60.5, 3.3]])
NEAR = TRUTH + np.array([[1.5, -0.2], [-1.9, 0.15], [0.7, 0.1]])


def packet_shape(xi0):
    """dy/dA: sin(f xi) exp(-(xi - xi0)^2 / (2 sigma^2))."""
    return np.sin(4.0 * XI) * np.exp(-(XI - xi0) ** 2 / (2 * SIGMA ** 2))


def packet_gradient(params, dy):
    """J(params)^T dy from the closed form: (d/dxi0, d/dA) per row."""
    rows = []
    for (xi0, amplitude), d in zip(params, dy):
        s = packet_shape(xi0)
        rows.append([np.sum(d * amplitude * s * (XI - xi0) / SIGMA ** 2), np.sum(d * s)])
    return np.array(rows)


def least_squares_fit(target, near):
    """argmin over (xi0, A) of 1/2 ||A shape(xi0) - target||^2 near `near`, by variable projection:
    A(xi0) = <shape, target> / <shape, shape> (linear least squares), xi0 the root of the reduced
    problem's derivative (brentq to 1e-13)."""
    def amplitude(xi0):
        s = packet_shape(xi0)
        return s @ target / (s @ s)

    def derivative(xi0):  # d/dxi0 of the objective at A(xi0) (dA terms vanish there)
        a = amplitude(xi0)
        return packet_gradient([(xi0, a)], [a * packet_shape(xi0) - target])[0, 0]

    xi0 = brentq(derivative, near[0] - 3.0, near[0] + 3.0, xtol=1e-13, rtol=1e-15)
    return np.array([xi0, amplitude(xi0)])


def packet(params):
    return physgrad.wave_packet(torch.from_numpy(np.array(params, dtype=np.float64))).numpy()


def noisy_targets(seed=0):
    noise = 0.3 * np.random.default_rng(seed).standard_normal((len(TRUTH), 256))
    return packet(TRUTH) + noise


def test_wave_packet_lbfgs_recovers_a_noiseless_packet():
    start = torch.from_numpy(NEAR)
    g = torch.from_numpy(packet(NEAR) - packet(TRUTH))  # l2's gradient: the target is the truth's packet
    dx = lbfgs_step(physgrad.wave_packet, start, g, lbfgs_iterations=40)
    np.testing.assert_allclose((start - dx).numpy(), TRUTH, rtol=0, atol=1e-8)


def test_wave_packet_lbfgs_reaches_the_least_squares_fit_of_a_noisy_packet():
    target = noisy_targets()
    start = torch.from_numpy(NEAR)
    dx = lbfgs_step(physgrad.wave_packet, start, torch.from_numpy(packet(NEAR) - target), lbfgs_iterations=100)
    fits = np.stack([least_squares_fit(t, n) for t, n in zip(target, NEAR)])
    assert np.abs(fits - TRUTH).max() > 1e-3  # the noise moves the minimizer off the truth
    np.testing.assert_allclose((start - dx).numpy(), fits, rtol=0, atol=1e-6)


def test_wave_packet_lbfgs_first_step_is_along_the_true_gradient():
    start = torch.from_numpy(NEAR)
    g = packet(NEAR) - noisy_targets(1)
    dx = lbfgs_step(physgrad.wave_packet, start, torch.from_numpy(g), y_step=0.5, lbfgs_iterations=1)
    assert_positive_multiple(dx, torch.from_numpy(packet_gradient(NEAR, 0.5 * g)), 1e-10)


@pytest.mark.parametrize("bounded", [True, False])
def test_fitter_recovers_noiseless_packets_from_near_the_truth(bounded):
    for truth, near in zip(TRUTH, NEAR):
        params, converged = physgrad.wave_packet_fit(torch.from_numpy(packet([truth])), initial=tuple(near),
                                                     bounded=bounded)
        assert converged.all()
        np.testing.assert_allclose(params[0].numpy(), truth, rtol=0, atol=1e-8)


@pytest.mark.parametrize("bounded", [True, False])
def test_fitter_reaches_the_least_squares_fit_of_noisy_packets(bounded):
    target = noisy_targets(2)
    for t, near in zip(target, NEAR):
        params, converged = physgrad.wave_packet_fit(torch.from_numpy(t[None]), initial=tuple(near), bounded=bounded)
        assert converged.all()
        np.testing.assert_allclose(params[0].numpy(), least_squares_fit(t, near), rtol=0, atol=1e-7)


def test_fitter_with_the_position_held_finds_the_linear_least_squares_amplitude():
    target = noisy_targets(3)
    for t, truth in zip(target, TRUTH):
        xi0 = truth[0] + 0.37  # any position: the amplitude is then a linear least-squares fit
        params, converged = physgrad.wave_packet_fit(torch.from_numpy(t[None]), initial=(xi0, 2.0),
                                                     lower=(xi0, -10.0), upper=(xi0 + 1e-12, 10.0))
        assert converged.all() and xi0 <= params[0, 0] <= xi0 + 1e-12
        s = packet_shape(xi0)
        assert params[0, 1].item() == pytest.approx(s @ t / (s @ s), rel=1e-10, abs=0)


def test_fitter_first_step_is_along_the_true_gradient():
    """One unbounded L-BFGS iteration from the paper's start (128, 2), per example."""
    start = np.array([128.0, 2.0])
    targets = packet(TRUTH)
    params, _ = physgrad.wave_packet_fit(torch.from_numpy(targets), max_iterations=1, bounded=False)
    steps = torch.from_numpy(start[None] - params.numpy())
    gradients = packet_gradient([start] * len(TRUTH), packet([start] * len(TRUTH)) - targets)
    assert_positive_multiple(steps, torch.from_numpy(gradients), 1e-10)


# ---- fluid: the first step against the gradient of the torch reference (benchmarks/references.py) ---------------

def test_fluid_lbfgs_first_step_is_along_the_reference_gradient():
    spec = importlib.util.spec_from_file_location("benchmark_references", REPOSITORY / "benchmarks" / "references.py")
    references = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(references)
    shape, steps, atol = (12, 12), 2, 1e-10
    v0 = 2.0 * random((2, 2, *shape), 8) + torch.tensor([1.5, -1.0], dtype=torch.float64)[None, :, None, None]
    m0 = torch.rand(2, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    g = random((2, *shape), 10)
    v = v0.clone().requires_grad_()
    references.TorchFluid(shape, steps=steps, atol=atol, max_iterations=10000)(v, m0).backward(0.5 * g)
    dx = lbfgs_step(lambda x, **o: physgrad.fluid(x, m0, steps=steps, pressure_atol=atol, **o), v0, g,
                    y_step=0.5, lbfgs_iterations=1)
    assert_positive_multiple(dx, v.grad, 1e-8)
