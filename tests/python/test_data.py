"""Seeded data generators: smooth noise (Poisson) and hot rectangles (heat)."""
import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

from physgrad.data import HeatData, PoissonData, smooth_noise


def _radial_power_spectrum(fields: torch.Tensor):
    """Mean |FFT|^2 of square [B, n, n] fields per integer radial wavenumber
    (cycles per domain) 0..n/2: returns (k, power)."""
    n = fields.shape[-1]
    power = (torch.fft.fft2(fields.double()).abs() ** 2).mean(0).numpy()
    frequencies = np.fft.fftfreq(n) * n
    radius = np.rint(np.hypot(frequencies[:, None], frequencies[None, :])).astype(int)
    k = np.arange(n // 2 + 1)
    return k, np.array([power[radius == i].mean() for i in k])


def test_smooth_noise_is_normalized_per_sample():
    fields = smooth_noise(torch.Generator().manual_seed(0), 16, (48, 40))
    assert fields.shape == (16, 48, 40) and fields.dtype == torch.float32
    torch.testing.assert_close(fields.mean(dim=(1, 2)), torch.zeros(16), atol=1e-6, rtol=0)
    torch.testing.assert_close(fields.std(dim=(1, 2), unbiased=False), torch.ones(16),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_smooth_noise_power_spectrum_falls_as_k_to_minus_twice_the_power(power):
    fields = smooth_noise(torch.Generator().manual_seed(1), 64, (64, 64), power=power,
                          dtype=torch.float64)
    k, spectrum = _radial_power_spectrum(fields)
    fitted = (k >= 4) & (k <= 28)
    slope = np.polyfit(np.log(k[fitted]), np.log(spectrum[fitted]), 1)[0]
    assert slope == pytest.approx(-2 * power, abs=0.2)


def test_smooth_noise_drops_wavelengths_longer_than_max_wavelength():
    fields = smooth_noise(torch.Generator().manual_seed(2), 8, (64, 64), max_wavelength=16.0,
                          dtype=torch.float64)
    k, spectrum = _radial_power_spectrum(fields)
    # wavelength 64 / k cells: k <= 3 is longer than 16 cells (k = 4 sits on the edge)
    assert spectrum[:4].max() < 1e-20 * spectrum[5]


def test_smooth_noise_refuses_a_grid_without_short_enough_wavelengths():
    with pytest.raises(ValueError, match="no frequency"):
        smooth_noise(torch.Generator().manual_seed(0), 1, (4, 4), max_wavelength=1.0)


def test_same_seed_gives_same_data_and_another_seed_other_data():
    first, again, other = (PoissonData(shape=(16, 16), seed=s).sample(4) for s in (3, 3, 4))
    assert torch.equal(first.x_star, again.x_star) and torch.equal(first.y_star, again.y_star)
    assert not torch.allclose(first.x_star, other.x_star)
    heat_first, heat_again, heat_other = (HeatData(shape=(32, 32), seed=s).hot_rectangles(4)
                                          for s in (3, 3, 4))
    assert torch.equal(heat_first, heat_again)
    assert not torch.allclose(heat_first, heat_other)


def test_state_dict_resumes_the_batch_sequence():
    data = PoissonData(shape=(16, 16), seed=5)
    data.sample(2)
    saved = data.state_dict()
    expected = data.sample(2)
    resumed = PoissonData(shape=(16, 16), seed=0)
    resumed.load_state_dict(saved)
    assert torch.equal(resumed.sample(2).x_star, expected.x_star)


def test_poisson_data_observation_is_the_poisson_solution_of_the_ground_truth(laplacian):
    batch = PoissonData(shape=(60, 80), seed=0).sample(3)
    assert batch.x_star.shape == batch.y_star.shape == (3, 60, 80)
    assert batch.y_star.dtype == torch.float32 and not batch.y_star.requires_grad
    # laplace(y*) = x* with zero Dirichlet boundary, solved independently with scipy in float64
    matrix = laplacian(60, 80).tocsc()
    for x_star, y_star in zip(batch.x_star, batch.y_star):
        expected = spla.spsolve(matrix, x_star.double().numpy().ravel()).reshape(60, 80)
        np.testing.assert_allclose(y_star.numpy(), expected, rtol=0, atol=1e-6 * np.abs(expected).max())


def test_hot_rectangles_are_nonnegative_with_soft_edges():
    fields = HeatData(seed=0).hot_rectangles(32)
    assert fields.shape == (32, 64, 64)
    assert fields.min() >= 0 and (fields.amax(dim=(1, 2)) > 0).all()
    lone = HeatData(seed=1, min_rectangles=1, max_rectangles=1).hot_rectangles(16)
    for field in lone:
        support = field > 0
        rows, columns = support.any(dim=1), support.any(dim=0)
        assert torch.equal(support, rows[:, None] & columns[None, :]), "one axis-aligned box"
        relative = field[support] / field.max()
        assert (relative <= 1 + 1e-6).all()
    edge_cells = [((f > 0) & (f < f.max() * (1 - 1e-6))).any() for f in lone]
    assert sum(bool(e) for e in edge_cells) >= 12, "most boxes cover partial edge cells"


def test_hot_rectangle_counts_are_checked():
    with pytest.raises(ValueError, match="min_rectangles"):
        HeatData(min_rectangles=5, max_rectangles=4)


def test_heat_data_observation_is_the_diffused_ground_truth():
    batch = HeatData(shape=(64, 64), seed=0).sample(2)
    assert batch.y_star.shape == (2, 64, 64) and batch.y_star.dtype == torch.float32
    # y* = F^-1(F(x*) exp(-|k|^2 nu_t)), nu_t = 8 on unit cells, with numpy's FFT in float64
    k = 2 * np.pi * np.fft.fftfreq(64)
    kernel = np.exp(-(k[:, None] ** 2 + k[None, :] ** 2) * 8.0)
    expected = np.real(np.fft.ifft2(np.fft.fft2(batch.x_star.double().numpy()) * kernel))
    np.testing.assert_allclose(batch.y_star.numpy(), expected, rtol=0, atol=1e-6 * np.abs(expected).max())
    torch.testing.assert_close(batch.y_star.mean(dim=(1, 2)), batch.x_star.mean(dim=(1, 2)),
                               atol=1e-5, rtol=1e-5)
