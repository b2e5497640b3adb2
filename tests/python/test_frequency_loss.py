"""physgrad.losses.frequency_loss against an independent numpy transcription of the
paper's fluid objective (B.5, the authors' PhiFlow call), its gradient, and the fluid
experiment's use of it (objective per method, energy convention, the paper's v0 metric)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import physgrad
from physgrad.experiments import get_experiment


def frequency_loss_numpy(y, target, n=1, falloff=80.0, threshold=1e-5, ignore_mean=True):
    """Per example: explicit DFT matrices (no FFT), signed frequencies in cycles per
    cell, Gaussian weights exp(-falloff^2 |k|^2 / 2), amplitudes floored at
    sqrt(threshold); summed over the batch."""
    total = 0.0
    for d in np.asarray(y, dtype=np.float64) - np.asarray(target, dtype=np.float64):
        if ignore_mean:
            d = d - d.mean()
        ny, nx = d.shape

        def frequencies(count):
            index = np.arange(count)
            return np.where(index <= (count - 1) // 2, index, index - count) / count

        def dft(count):
            index = np.arange(count)
            return np.exp(-2j * math.pi * np.outer(index, index) / count)

        spectrum = dft(ny) @ d @ dft(nx).T
        ky, kx = frequencies(ny), frequencies(nx)
        weights = np.exp(-0.5 * falloff ** 2 * (ky[:, None] ** 2 + kx[None, :] ** 2))
        amplitude = np.sqrt(np.maximum(np.abs(spectrum * weights) ** 2, threshold))
        total += amplitude.sum() if n == 1 else 0.5 * (amplitude ** 2).sum()
    return total


@pytest.mark.parametrize("shape,falloff,n,ignore_mean", [((64, 64), 80.0, 1, True), ((12, 9), 3.0, 1, True),
                                                         ((10, 16), 2.0, 2, False), ((7, 8), 0.5, 1, False)])
def test_matches_the_numpy_formula(shape, falloff, n, ignore_mean):
    generator = torch.Generator().manual_seed(3)
    y = torch.randn(3, *shape, generator=generator, dtype=torch.float64)
    target = torch.randn(3, *shape, generator=generator, dtype=torch.float64) + 0.7
    got = physgrad.losses.frequency_loss(y, target, n=n, falloff=falloff, ignore_mean=ignore_mean)
    assert float(got) == pytest.approx(frequency_loss_numpy(y, target, n, falloff, ignore_mean=ignore_mean), rel=1e-12)
    # leading axes are batch axes: [2, 3, ny, nx] sums the same examples
    stacked = physgrad.losses.frequency_loss(y.expand(2, *y.shape), target.expand(2, *y.shape), n=n, falloff=falloff,
                                             ignore_mean=ignore_mean)
    assert float(stacked) == pytest.approx(2 * float(got), rel=1e-12)


def test_paper_weights_and_floor_on_the_64_grid():
    """With falloff 80 on 64x64 cells only the lowest wave numbers count; a perfect
    match scores the floor 64 * 64 * sqrt(threshold) per example; the mean is ignored."""
    zero = torch.zeros(2, 64, 64, dtype=torch.float64)
    assert float(physgrad.losses.frequency_loss(zero, zero)) == pytest.approx(2 * 4096 * math.sqrt(1e-5))
    assert float(physgrad.losses.frequency_loss(zero + 3.0, zero)) == pytest.approx(2 * 4096 * math.sqrt(1e-5))
    x = torch.arange(64, dtype=torch.float64)
    for wavenumber, weight in ((1, math.exp(-0.5 * 6400 / 64 ** 2)), (2, math.exp(-0.5 * 6400 * 4 / 64 ** 2))):
        wave = torch.cos(2 * math.pi * wavenumber * x / 64)[None, None, :].expand(1, 64, 64)
        # two spectral lines of amplitude 64 * 64 / 2, the other 4094 frequencies at the floor
        expected = 2 * weight * 64 * 64 / 2 + 4094 * math.sqrt(1e-5)
        assert float(physgrad.losses.frequency_loss(wave, zero[:1])) == pytest.approx(expected, rel=1e-9)


def test_gradient_is_the_derivative():
    generator = torch.Generator().manual_seed(5)
    y = torch.randn(2, 8, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 8, 6, generator=generator, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: physgrad.losses.frequency_loss(v, target, falloff=1.5), (y,))
    assert torch.autograd.gradcheck(lambda v: physgrad.losses.frequency_loss(v, target, n=2, falloff=1.5), (y,))


@pytest.mark.parametrize("call,message", [
    (lambda: physgrad.losses.frequency_loss(torch.zeros(2, 4, 4), torch.zeros(2, 4, 5)), "shape"),
    (lambda: physgrad.losses.frequency_loss(torch.zeros(4), torch.zeros(4)), "ny, nx"),
    (lambda: physgrad.losses.frequency_loss(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), n=3), "n must be 1 or 2"),
    (lambda: physgrad.losses.frequency_loss(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), threshold=-1.0), "threshold"),
])
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _fluid_batch(experiment, size=2, seed=1):
    return experiment.make_data(seed).sample(size)


def test_fluid_experiment_objective_per_method():
    experiment = get_experiment("fluid", shape=(16, 16))
    assert experiment.frequency_falloff == pytest.approx(20.0)  # 80 per cell on 64 cells, the same per box
    batch = _fluid_batch(experiment)
    y = batch.y_star + 0.1 * torch.randn(batch.y_star.shape, generator=torch.Generator().manual_seed(2))
    frequency = physgrad.losses.frequency_loss(y, batch.y_star, falloff=20.0)
    assert float(experiment.y_loss(y, batch)) == pytest.approx(float(frequency))
    assert float(experiment.training_loss(y, batch, "adjoint")) == pytest.approx(float(frequency))
    for mode in ("physical", "lbfgs"):
        l2 = float(physgrad.losses.l2(y, batch.y_star))
        assert float(experiment.training_loss(y, batch, mode)) == pytest.approx(l2)
    plain = get_experiment("fluid", shape=(16, 16), objective="l2")
    assert float(plain.training_loss(y, batch, "adjoint")) == pytest.approx(float(physgrad.losses.l2(y, batch.y_star)))
    with pytest.raises(ValueError, match="objective"):
        get_experiment("fluid", objective="l1")
    with pytest.raises(ValueError, match="energy"):
        get_experiment("fluid", energy="kinetic")


def test_fluid_metric_is_the_projected_velocity_error():
    experiment = get_experiment("fluid", shape=(16, 16))
    batch = _fluid_batch(experiment, seed=4)
    x = batch.x_star.double() + 0.3 * torch.randn(batch.x_star.shape, generator=torch.Generator().manual_seed(1),
                                                  dtype=torch.float64)
    _, velocities = physgrad.fluid_sequence(x, batch.m0.double(), steps=1, energy="per_component")
    expected = np.mean([np.sqrt(((velocities[b, 0] - batch.x_star[b].double()) ** 2).sum(0)).sum().item()
                        for b in range(x.shape[0])])
    assert float(experiment.x_metric(x, batch)) == pytest.approx(expected, rel=1e-12)
    # a divergence-free field is its own projection: the metric of the truth is the
    # truth's divergent part, smaller than any perturbed prediction's error
    assert float(experiment.x_metric(batch.x_star.double(), batch)) < float(experiment.x_metric(x, batch))


def test_fluid_energy_conventions():
    generator = torch.Generator().manual_seed(8)
    v0 = torch.randn(2, 2, 8, 8, generator=generator, dtype=torch.float64)
    v0[:, 0] *= 3.0  # unequal component energies: the conventions differ
    m0 = torch.rand(2, 8, 8, generator=generator, dtype=torch.float64)
    results = {energy: physgrad.fluid(v0, m0, steps=3, grad_mode="adjoint", energy=energy)
               for energy in ("total", "per_component", "none")}
    assert torch.equal(results["total"], physgrad.fluid(v0, m0, steps=3, grad_mode="adjoint"))
    for a, b in (("total", "per_component"), ("total", "none"), ("per_component", "none")):
        assert (results[a] - results[b]).abs().max() > 1e-6, (a, b)
    # per component: each component's staggered energy is restored after every step, so
    # the centred velocities' states differ from the total convention's
    _, total = physgrad.fluid_sequence(v0, m0, steps=2, energy="total")
    _, per = physgrad.fluid_sequence(v0, m0, steps=2, energy="per_component")
    assert torch.equal(total[:, 0], per[:, 0]) and (total[:, 2] - per[:, 2]).abs().max() > 1e-6
    v = v0.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v: physgrad.fluid(v, m0, steps=2, grad_mode="adjoint", energy="per_component", pressure_atol=1e-12),
        (v,), atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="energy must be 'total', 'per_component' or 'none'"):
        physgrad.fluid(v0, m0, energy="kinetic")
