"""The heat op's physical gradient against an independent numpy transcription of
the stable probabilistic inverse of the paper's appendix B.4, with the noise
model and the decision rule of the authors' code (tum-pbs/SIP,
heat/inv_diffuse.py ``apply_damping`` and heat/train_heat.py's call).

The rule, per sample and per Fourier coefficient c of the y-space step dy
(unnormalized DFT, amplitude a = |c|):

* two hypotheses with priors 1/2: the coefficient is signal, or noise;
* likelihoods are the Gaussian kernels exp(-1/2 (a / s)^2) (not normalized, as
  in the SIP code), with the signal scale s = E = sqrt(ny nx) exp(-|k|^2 nu_t)
  (SIP: ``nx * inv_kernel`` on its square grid; the amplitude of a white x-space
  step of cell size 1, diffused) and the noise scale s = f = 1e-6 ||dy||_2
  (SIP: ``sqrt(sum(uncertainty^2))`` with ``uncertainty = |dy| * 1e-6``);
* Bayes' theorem gives the probability of signal p;
* the action is 2 (p - 1/2) where p <= 1/2 or p >= 0.68 ("1 sigma required to
  take action"), else 0, and the coefficient is multiplied by
  exp(action |k|^2 nu_t).

The steps used here put many coefficients near the noise level, where the
decision is not trivially 0 or 1, at frequencies where it changes the result
by orders of magnitude; a test checks that a changed threshold (0.68 -> 0.9,
0.68 -> 0.7) or likelihood factor (1/2 -> 0.05, 1/2 -> 0.45) would fail the
comparison by far.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import expit, logit

import physgrad

NOISE_RELATIVE = 1e-6  # SIP heat/train_heat.py: uncertainty=abs(y_target - y) * 1e-6
SIGNAL_AMPLITUDE = 1.0  # SIP: expected_amp = 1. * nx * inv_kernel
CONFIDENCE = 0.68  # SIP: "1 sigma required to take action"
LIKELIHOOD_FACTOR = 0.5  # SIP: math.exp(-0.5 * (abs(amp) / scale) ** 2)
RTOL = 1e-8  # of the largest |dx| of the sample: the op agrees to ~1e-10


def log_gain(shape, nu_t, spacing):
    """|k|^2 nu_t per FFT bin, k = 2 pi fftfreq(n, h) (SIP: -fft_laplace * amount)."""
    ky = 2 * np.pi * np.fft.fftfreq(shape[0], spacing[0])
    kx = 2 * np.pi * np.fft.fftfreq(shape[1], spacing[1])
    return (ky[:, None] ** 2 + kx[None, :] ** 2) * nu_t


def log_odds_of_signal(dy, nu_t, spacing, factor=LIKELIHOOD_FACTOR):
    """log P(signal | a) - log P(noise | a) per coefficient of one sample [ny, nx], by Bayes with equal priors."""
    exponent = log_gain(dy.shape, nu_t, spacing)
    amplitude = np.abs(np.fft.fft2(dy))
    largest = np.abs(dy).max()
    noise_scale = NOISE_RELATIVE * largest * np.linalg.norm(dy / largest)  # ||dy|| without underflow
    log_signal_scale = np.log(SIGNAL_AMPLITUDE * np.sqrt(dy.size)) - exponent
    log_prior_signal = log_prior_noise = np.log(0.5)
    log_likelihood_signal = -factor * (amplitude * np.exp(-log_signal_scale)) ** 2
    log_likelihood_noise = -factor * (amplitude / noise_scale) ** 2
    return (log_likelihood_signal + log_prior_signal) - (log_likelihood_noise + log_prior_noise)


def stable_inverse(dy, nu_t, spacing=(1.0, 1.0), confidence=CONFIDENCE, factor=LIKELIHOOD_FACTOR):
    """The x-space step for the y-space step dy [batch, ny, nx], sample by sample (numpy, float64)."""
    out = np.zeros_like(dy)
    for s, sample in enumerate(dy):
        if not sample.any():
            continue  # no step, no noise scale: nothing to invert
        probability = expit(log_odds_of_signal(sample, nu_t, spacing, factor))
        action = np.where((probability <= 0.5) | (probability >= confidence), 2 * (probability - 0.5), 0.0)
        spectrum = np.fft.fft2(sample) * np.exp(action * log_gain(sample.shape, nu_t, spacing))
        out[s] = np.real(np.fft.ifft2(spectrum))
    return out


def exercising_step(ny, nx, seed, size):
    """A smooth step (a few low modes) plus, in every frequency, a part at 0.3 .. 6 times the
    noise scale 1e-6 ||dy||: the coefficients the decision rule is about.  ||dy|| ~ size."""
    rng = np.random.default_rng(seed)
    j, i = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    smooth = sum(rng.standard_normal() * np.cos(2 * np.pi * (p * j / ny + q * i / nx) + rng.uniform(0, 2 * np.pi))
                 for p in range(3) for q in range(3))
    noise_scale = NOISE_RELATIVE * np.linalg.norm(smooth)
    ratio = rng.uniform(0.3, 6.0, (ny, nx))
    near_noise = np.real(np.fft.ifft2(ratio * noise_scale * np.exp(2j * np.pi * rng.uniform(size=(ny, nx)))))
    return size * (smooth + near_noise) / np.linalg.norm(smooth)


def op_step(dy, nu_t, spacing, y_step=1.0):
    """x.grad of the physical mode for the incoming gradient dy / y_step, i.e. the op's step for dy."""
    x = torch.zeros(dy.shape, dtype=torch.float64, requires_grad=True)
    y = physgrad.heat(x, nu_t=nu_t, spacing=spacing, grad_mode="physical", y_step=y_step)
    y.backward(torch.from_numpy(dy / y_step))
    return x.grad.numpy()


def relative_difference(a, b):
    """max |a - b| per sample over max |b| of that sample, the largest over the batch."""
    return max(np.abs(a[s] - b[s]).max() / np.abs(b[s]).max() for s in range(len(b)) if b[s].any())


# (shape, nu_t, spacing, step sizes per sample, y_step): the paper's setting with steps of very
# different sizes in one batch (each sample has its own noise scale; a step of 1e-285, whose
# squares underflow, takes cphys's log-space implementation of the rule), an anisotropic non-square grid.
CASES = {
    "paper 64x64, nu_t 8": ((64, 64), 8.0, (1.0, 1.0), (1.0, 1e-8, 1e-285), 1.0),
    "12x10, spacing (0.8, 1.3), nu_t 1.5": ((12, 10), 1.5, (0.8, 1.3), (1e-3, 30.0), 0.25),
    "9x16, spacing (1.2, 0.6), nu_t 0.7": ((9, 16), 0.7, (1.2, 0.6), (1.0,), 1.0),
}


def case_step(name):
    shape, nu_t, spacing, sizes, y_step = CASES[name]
    dy = np.stack([exercising_step(*shape, seed=s, size=size) for s, size in enumerate(sizes)])
    return dy, nu_t, spacing, y_step


@pytest.mark.parametrize("name", list(CASES))
def test_physical_mode_is_the_b4_rule(name):
    dy, nu_t, spacing, y_step = case_step(name)
    # The input is well posed for a tight comparison: no coefficient within rounding of the threshold.
    for sample in dy:
        margin = np.abs(log_odds_of_signal(sample, nu_t, spacing) - logit(CONFIDENCE)).min()
        assert margin > 1e-6, margin
    expected = stable_inverse(dy, nu_t, spacing)
    got = op_step(dy, nu_t, spacing, y_step)
    assert relative_difference(got, expected) < RTOL


@pytest.mark.parametrize("name", list(CASES))
def test_the_steps_exercise_every_part_of_the_rule(name):
    """Confident signal, partial confidence (0.68 <= p < 1), undecided (1/2 < p < 0.68) and noise all
    occur, and a change of the rule's constants changes the step by far more than the tolerance."""
    dy, nu_t, spacing, _ = case_step(name)
    p = np.stack([expit(log_odds_of_signal(sample, nu_t, spacing)) for sample in dy])
    for sample in p:  # the threshold matters in every sample
        assert ((sample > 0.5) & (sample < CONFIDENCE)).sum() >= 3
        assert ((sample >= CONFIDENCE) & (sample < 0.999)).sum() >= 3
    # (a tiny step has no frequency where the signal would drown in its noise: nothing is judged noise there)
    assert (p == 1.0).sum() >= 3 and (p < 0.1).sum() >= 3
    expected = stable_inverse(dy, nu_t, spacing)
    for changed in ({"confidence": 0.9}, {"confidence": 0.7}, {"factor": 0.05}, {"factor": 0.45}):
        assert relative_difference(stable_inverse(dy, nu_t, spacing, **changed), expected) > 30 * RTOL, changed


def test_a_zero_sample_gives_a_zero_step_next_to_a_nonzero_one():
    dy = np.stack([np.zeros((8, 8)), exercising_step(8, 8, seed=5, size=1.0)])
    got = op_step(dy, 2.0, (1.0, 1.0))
    assert (got[0] == 0).all()
    assert relative_difference(got[1:], stable_inverse(dy[1:], 2.0)) < RTOL


def test_a_noise_free_smooth_step_is_inverted_exactly_on_its_frequencies():
    """Paper B.4: with no noise, low frequencies carrying signal get the exact inverse exp(+|k|^2 nu_t)."""
    j, i = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    x_step = np.cos(2 * np.pi * (2 * j + i) / 64) + 0.5 * np.sin(2 * np.pi * 3 * i / 64)
    dy = np.real(np.fft.ifft2(np.fft.fft2(x_step) * np.exp(-log_gain((64, 64), 8.0, (1.0, 1.0)))))[None]
    got = op_step(dy, 8.0, (1.0, 1.0))
    np.testing.assert_allclose(got[0], x_step, rtol=0, atol=1e-9)
    assert relative_difference(got, stable_inverse(dy, 8.0)) < RTOL


def test_noise_floor_damps_a_rounding_level_step_and_keeps_a_clean_one():
    """``noise_floor``: an absolute noise per cell beside the relative one. A step at
    rounding level is judged noise (damped: its norm cannot grow); a clean step far
    above the floor gets the physical gradient it gets without a floor."""

    g = torch.Generator().manual_seed(5)
    tiny = 1e-14 * torch.randn(2, 32, 32, generator=g, dtype=torch.float64)

    def physical(step, **options):
        x = torch.zeros(2, 32, 32, dtype=torch.float64, requires_grad=True)
        physgrad.heat(x, grad_mode="physical", **options).backward(step)
        return x.grad

    plain, floored = physical(tiny), physical(tiny, noise_floor=1e-8)
    assert plain.norm() > 1e3 * tiny.norm()                        # taken for signal, amplified
    assert floored.norm() <= tiny.norm() * (1 + 1e-12)              # judged noise
    # a few low modes (the rest exactly zero up to rounding): far above the floor
    i = torch.arange(32, dtype=torch.float64) * 2 * torch.pi / 32
    smooth = torch.stack([torch.sin(i)[:, None] * torch.cos(2 * i)[None, :], torch.cos(3 * i)[:, None] + 0 * i])
    clean = physgrad.heat(smooth, nu_t=1.0)
    torch.testing.assert_close(physical(clean, nu_t=1.0, noise_floor=1e-8), physical(clean, nu_t=1.0),
                               rtol=1e-12, atol=1e-12)
    layer = physgrad.nn.Heat(noise_floor=1e-8)
    assert physgrad.nn.Heat().load_state_dict(layer.state_dict()) is not None
    assert "noise_floor=1e-08" in repr(layer)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="noise_floor must be finite and >= 0"):
            physgrad.heat(torch.zeros(1, 4, 4), noise_floor=bad)
