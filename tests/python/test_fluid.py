"""physgrad.fluid: the adjoint, the physical and lbfgs modes, errors, scripting, the experiment."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import physgrad

REPOSITORY = Path(__file__).resolve().parents[2]


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def periodic_delta(d: torch.Tensor, period: float) -> torch.Tensor:
    return d - period * torch.round(d / period)


def unit_vortex(ny: int, nx: int, spacing: float, sigma: float = 20.0) -> torch.Tensor:
    """fluid.h's W: exp(-|r|^2 / (2 sigma^2)) (-r_y, r_x) about the box centre, [2, ny, nx]."""
    x = (torch.arange(nx, dtype=torch.float64) + 0.5) * spacing
    y = (torch.arange(ny, dtype=torch.float64) + 0.5) * spacing
    rx = periodic_delta(x - nx * spacing / 2, nx * spacing)[None, :].expand(ny, nx)
    ry = periodic_delta(y - ny * spacing / 2, ny * spacing)[:, None].expand(ny, nx)
    falloff = torch.exp(-(rx ** 2 + ry ** 2) / (2 * sigma ** 2))
    return torch.stack([-falloff * ry, falloff * rx])


def circular_centre(marker: torch.Tensor, spacing: float) -> torch.Tensor:
    """fluid.h's centre of mass (circular mean per axis) of [ny, nx]: (x, y)."""
    centre = []
    for weights in (marker.sum(0), marker.sum(1)):
        count = weights.numel()
        angle = 2 * math.pi * (torch.arange(count, dtype=torch.float64) + 0.5) / count
        phase = torch.atan2((weights * angle.sin()).sum(), (weights * angle.cos()).sum())
        centre.append(torch.remainder(phase / (2 * math.pi) * count * spacing, count * spacing))
    return torch.stack(centre)


def smooth_velocity(batch, ny, nx, seed=1, mean=(2.0, -1.0), scale=1.5):
    noise = torch.randn(batch, 2, ny, nx, generator=generator(seed), dtype=torch.float64) * scale
    return noise + torch.tensor(mean, dtype=torch.float64)[None, :, None, None]


def test_adjoint_passes_gradcheck_for_v0_and_m0():
    v0 = smooth_velocity(2, 7, 9).requires_grad_()
    m0 = torch.rand(2, 7, 9, generator=generator(2), dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v, m: physgrad.fluid(v, m, steps=2, spacing=(1.5, 2.0), grad_mode="adjoint", pressure_atol=1e-12),
        (v0, m0))


def test_uniform_whole_cell_velocity_translates_the_marker_exactly():
    # 1 cell per step in x, 2 cells per step in -y: the MacCormack departure points are cell centres.
    dy, dx, dt, steps = 1.5, 2.0, 0.25, 3
    v0 = torch.empty(2, 2, 8, 10, dtype=torch.float64)
    v0[:, 0], v0[:, 1] = dx / dt, -2 * dy / dt
    m0 = torch.rand(2, 8, 10, generator=generator(3), dtype=torch.float64)
    m_t = physgrad.fluid(v0, m0, steps=steps, dt=dt, spacing=(dy, dx))
    torch.testing.assert_close(m_t, torch.roll(m0, shifts=(-2 * steps, steps), dims=(1, 2)), rtol=0, atol=1e-12)


def test_marker_stays_within_its_initial_bounds():
    v0 = smooth_velocity(3, 12, 12, seed=4, scale=4.0)
    m0 = 0.2 + 0.7 * torch.rand(3, 12, 12, generator=generator(5), dtype=torch.float64)
    m_t = physgrad.fluid(v0, m0, steps=4)
    assert m_t.min() >= 0.2 - 1e-12 and m_t.max() <= 0.9 + 1e-12
    assert not torch.allclose(m_t, m0)


def test_float32_in_float32_out_and_channel_dim_kept():
    v0 = smooth_velocity(2, 8, 8).float()
    m0 = torch.rand(2, 1, 8, 8, generator=generator(6))
    m_t = physgrad.fluid(v0, m0, steps=2)
    assert m_t.dtype == torch.float32 and m_t.shape == (2, 1, 8, 8)
    torch.testing.assert_close(m_t, physgrad.fluid(v0.double(), m0.double()[:, 0], steps=2).float().unsqueeze(1))
    transposed = v0.transpose(2, 3).contiguous().transpose(2, 3)
    torch.testing.assert_close(physgrad.fluid(transposed, m0, steps=2), m_t, rtol=0, atol=0)


def test_physical_mode_recovers_uniform_plus_vortex_far_better_than_an_adjoint_step():
    ny = nx = 32
    h, steps, dt = 4.0, 8, 0.25  # a 128 x 128 box, as the paper's, on a coarser grid
    cells = (torch.arange(nx, dtype=torch.float64) + 0.5) * h
    inside = (cells[None, :] - 40) ** 2 + (cells[:, None] - 84) ** 2 < 22 ** 2
    m0 = (inside & (torch.rand(ny, nx, generator=generator(7)) > 0.3)).double()[None]
    # The data set's prior: the uniform flow carries the marker's centre to the box centre in t.
    uniform = periodic_delta(64.0 - circular_centre(m0[0], h), 128.0) / (steps * dt)
    v_true = (uniform[:, None, None] + 0.8 * unit_vortex(ny, nx, h))[None]
    target = physgrad.fluid(v_true, m0, steps=steps, dt=dt, spacing=(h, h))
    v = torch.zeros_like(v_true, requires_grad=True)

    def gradient(mode):
        v.grad = None
        physgrad.losses.l2(physgrad.fluid(v, m0, steps=steps, dt=dt, spacing=(h, h), grad_mode=mode),
                           target).backward()
        return v.grad.clone()

    physical = v.detach() - gradient("physical")
    g = gradient("adjoint")
    best_rate = ((v.detach() - v_true) * g).sum() / (g * g).sum()  # the x-space optimal step size
    adjoint = v.detach() - best_rate * g

    def error(x):
        return (x - v_true).abs().mean().item()

    assert error(physical) < 0.2 * error(v.detach())
    assert error(physical) < 0.2 * error(adjoint), (error(physical), error(adjoint))
    stats = physgrad.solve_stats("fluid")
    assert stats.phase == "adjoint" and stats.all_converged


def test_physical_mode_has_no_gradient_for_the_marker_and_refuses_one_requiring_it():
    v0 = smooth_velocity(1, 8, 8).requires_grad_()
    m0 = torch.rand(1, 8, 8, generator=generator(8), dtype=torch.float64)
    with pytest.raises(ValueError, match="m0 requires grad, but m0 is data"):
        physgrad.fluid(v0, m0.clone().requires_grad_(), steps=2, grad_mode="physical")
    physgrad.fluid(v0, m0, steps=2, grad_mode="physical").sum().backward()
    assert physgrad.solve_stats("fluid").phase == "physical"
    # The reverse simulation's estimate v0 - dv0 is a uniform flow plus a multiple of the unit vortex W.
    estimate = (v0.detach() - v0.grad)[0].reshape(-1)
    one, zero = torch.ones(8, 8, dtype=torch.float64), torch.zeros(8, 8, dtype=torch.float64)
    basis = torch.stack([torch.stack([one, zero]), torch.stack([zero, one]), unit_vortex(8, 8, 2.0)]).reshape(3, -1).T
    fitted = basis @ torch.linalg.lstsq(basis, estimate[:, None]).solution
    torch.testing.assert_close(fitted[:, 0], estimate, rtol=0, atol=1e-12 * estimate.abs().max().item())


def test_double_backward_is_refused_and_an_absent_gradient_stays_absent():
    v0 = smooth_velocity(1, 6, 6).requires_grad_()
    m0 = torch.rand(1, 6, 6, generator=generator(13), dtype=torch.float64)
    y = physgrad.fluid(v0, m0, steps=1, grad_mode="physical")
    (g_v0,) = torch.autograd.grad(y.sum(), (v0,), create_graph=True)
    assert g_v0.requires_grad
    with pytest.raises(RuntimeError, match="double backward"):
        g_v0.sum().backward()
    g_v0, g_m0 = torch.ops.physgrad.fluid_backward(torch.ones_like(y), v0, m0.requires_grad_(), y.detach(), 1, 0.25,
                                                   [2.0, 2.0], "physical", 1.0, 1e-4, 1000, 32, "raise")
    assert g_m0 is None and g_v0.requires_grad


def test_lbfgs_lowers_the_y_space_objective():
    v_true = smooth_velocity(2, 10, 10, seed=9, scale=1.0)
    m0 = torch.rand(2, 10, 10, generator=generator(10), dtype=torch.float64)
    target = physgrad.fluid(v_true, m0, steps=2, pressure_atol=1e-10)
    v = smooth_velocity(2, 10, 10, seed=11, scale=1.0).requires_grad_()

    def objective(x):
        return physgrad.losses.l2(physgrad.fluid(x, m0, steps=2, pressure_atol=1e-10), target).item()

    physgrad.losses.l2(physgrad.fluid(v, m0, steps=2, grad_mode="lbfgs", pressure_atol=1e-10,
                                      lbfgs_iterations=6), target).backward()
    stats = physgrad.solve_stats("fluid")
    assert stats.phase == "lbfgs" and len(stats.iterations) == 2
    assert objective(v.detach() - v.grad) < 0.5 * objective(v.detach())


def test_solve_stats_report_each_sample():
    physgrad.fluid(smooth_velocity(3, 8, 8), torch.rand(3, 8, 8, dtype=torch.float64), steps=2)
    stats = physgrad.solve_stats("fluid")
    assert stats.phase == "forward" and len(stats.iterations) == 3 and stats.all_converged
    assert all(it > 0 for it in stats.iterations) and all(r <= 1e-4 for r in stats.residual_norms)


@pytest.fixture
def iterative_pressure_solver():
    """ICC(0): the default Cholesky preconditioner converges in one iteration, so
    pressure_max_iterations=1 would not fail."""
    physgrad.set_solver_options("-physgrad_fluid_pc_type icc")
    yield
    physgrad.clear_solver_options()


def test_pressure_non_convergence_is_a_clear_runtime_error(iterative_pressure_solver):
    v0, m0 = smooth_velocity(2, 12, 12), torch.rand(2, 12, 12, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="did not converge") as info:
        physgrad.fluid(v0, m0, steps=2, pressure_atol=1e-12, pressure_max_iterations=1)
    assert "DIVERGED_ITS" in str(info.value) and "pressure solve" in str(info.value)
    assert physgrad.fluid(v0, m0, steps=2).isfinite().all()  # still usable afterwards


def test_pressure_non_convergence_can_warn_and_finish_the_batch(iterative_pressure_solver):
    v0 = smooth_velocity(2, 12, 12).requires_grad_()
    m0 = torch.rand(2, 12, 12, generator=generator(14), dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="did not converge for samples \\[0, 1\\]"):
        m_t = physgrad.fluid(v0, m0, steps=2, grad_mode="adjoint", pressure_atol=1e-12,
                             pressure_max_iterations=1, on_failure="warn")
    assert m_t.isfinite().all()
    assert physgrad.solve_stats("fluid").converged == [False, False]
    with pytest.warns(UserWarning, match="adjoint pressure solve"):
        m_t.sum().backward()
    # Every sample gets the adjoint of its unconverged run: near the converged gradient, not zero or garbage.
    converged = v0.detach().clone().requires_grad_()
    physgrad.fluid(converged, m0, steps=2, grad_mode="adjoint", pressure_atol=1e-12).sum().backward()
    for s in range(2):
        cosine = torch.nn.functional.cosine_similarity(v0.grad[s].reshape(-1), converged.grad[s].reshape(-1), dim=0)
        assert cosine > 0.8, (s, cosine)


def bad_call(**changes):
    arguments = dict(v0=torch.zeros(2, 2, 6, 6), m0=torch.zeros(2, 6, 6))
    arguments.update(changes)
    return lambda: physgrad.fluid(**arguments)


@pytest.mark.parametrize("call, error, words", [
    (bad_call(v0=torch.zeros(2, 2, 6, 6, dtype=torch.int64)), TypeError, "v0 must be float32 or float64"),
    (bad_call(m0=torch.zeros(2, 6, 6, dtype=torch.float16)), TypeError, "m0 must be float32 or float64"),
    (bad_call(v0=torch.zeros(2, 6, 6)), ValueError, "v0 must have 4 dimensions"),
    (bad_call(v0=torch.zeros(2, 3, 6, 6)), ValueError, "v0 must be [B, 2, ny, nx]"),
    (bad_call(m0=torch.zeros(6, 6)), ValueError, "m0 must have 3 or 4 dimensions"),
    (bad_call(m0=torch.zeros(2, 2, 6, 6)), ValueError, "a 4-D m0 must be [B, 1, ny, nx]"),
    (bad_call(m0=torch.zeros(1, 6, 6)), ValueError, "m0 has batch 1 but v0 has batch 2"),
    (bad_call(m0=torch.zeros(2, 6, 7)), ValueError, "m0's grid [6, 7] differs from v0's grid [6, 6]"),
    (bad_call(v0=torch.zeros(2, 2, 2, 6), m0=torch.zeros(2, 2, 6)), ValueError, "at least 3 cells per axis"),
    (bad_call(steps=0), ValueError, "steps must be in [1, 100000]"),
    (bad_call(dt=0.0), ValueError, "dt must be positive"),
    (bad_call(dt=float("nan")), ValueError, "dt must be positive"),
    (bad_call(spacing=(2.0, -1.0)), ValueError, "spacing must be positive"),
    (bad_call(pressure_atol=0.0), ValueError, "pressure_atol must be positive"),
    (bad_call(pressure_max_iterations=0), ValueError, "pressure_max_iterations must be in [1, 2^31)"),
    (bad_call(grad_mode="newton"), ValueError, "'adjoint', 'physical', 'lbfgs'"),
    (bad_call(on_failure="ignore"), ValueError, "on_failure"),
    (bad_call(grad_mode="lbfgs", lbfgs_iterations=0), ValueError, "lbfgs_iterations must be in [1, 2^31)"),
    (bad_call(y_step=float("inf")), ValueError, "y_step must be finite"),
    (bad_call(v0=torch.full((2, 2, 6, 6), float("nan"))), RuntimeError, "v0[0] is not finite"),
    (bad_call(m0=torch.full((2, 6, 6), float("inf"))), RuntimeError, "m0[0] is not finite"),
])
def test_bad_input_is_a_clear_python_error(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)
    assert physgrad.fluid(torch.ones(1, 2, 4, 4), torch.ones(1, 4, 4), steps=1).isfinite().all()


def test_empty_batch_gives_empty_result():
    assert physgrad.fluid(torch.zeros(0, 2, 4, 5), torch.zeros(0, 4, 5)).shape == (0, 4, 5)


def test_unit_vortex_and_centre_of_mass_are_the_inverses_definitions():
    """The data generator's geometry comes from cphys: the vortex equals fluid.h's
    formula, a one-cell marker's centre is that cell's centre, and shifting a marker
    by whole cells across the periodic edge shifts its centre by the same amount."""
    vortex = physgrad.ops.fluid_unit_vortex((12, 10), (1.5, 2.0))
    x = (torch.arange(10, dtype=torch.float64) + 0.5) * 2.0
    y = (torch.arange(12, dtype=torch.float64) + 0.5) * 1.5
    rx = periodic_delta(x - 10.0, 20.0)[None, :].expand(12, 10)
    ry = periodic_delta(y - 9.0, 18.0)[:, None].expand(12, 10)
    falloff = torch.exp(-(rx ** 2 + ry ** 2) / (2 * 20.0 ** 2))
    assert torch.allclose(vortex, torch.stack([-falloff * ry, falloff * rx]), rtol=1e-13, atol=1e-14)
    marker = torch.zeros(2, 12, 10, dtype=torch.float64)
    marker[0, 3, 7] = 1.0
    marker[1, 2:5, 8:10] = 1.0
    marker[1, 2:5, 0] = 1.0  # a block across the x edge
    centre = physgrad.ops.fluid_centre_of_mass(marker, (1.5, 2.0))
    assert torch.allclose(centre[0], torch.tensor([7.5 * 2.0, 3.5 * 1.5], dtype=torch.float64), atol=1e-12)
    shifted = physgrad.ops.fluid_centre_of_mass(torch.roll(marker, shifts=(1, 3), dims=(1, 2)), (1.5, 2.0))
    expected = torch.remainder(centre + torch.tensor([3 * 2.0, 1 * 1.5], dtype=torch.float64),
                               torch.tensor([20.0, 18.0], dtype=torch.float64))
    assert torch.allclose(shifted, expected, atol=1e-12)
    uniform = physgrad.ops.fluid_centre_of_mass(torch.ones(1, 12, 10, dtype=torch.float64), (1.5, 2.0))
    assert torch.equal(uniform, torch.tensor([[10.0, 9.0]], dtype=torch.float64))  # no centre: the box centre
    with pytest.raises(RuntimeError, match="marker"):
        physgrad.ops.fluid_centre_of_mass(torch.full((1, 12, 10), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="spacing"):
        physgrad.ops.fluid_unit_vortex((12, 10), (0.0, 1.0))
    with pytest.raises(ValueError, match="at least 3 cells"):
        physgrad.ops.fluid_unit_vortex((2, 10), (1.0, 1.0))


def test_sequence_holds_every_state_of_the_run():
    v0, m0 = smooth_velocity(2, 8, 10), torch.rand(2, 8, 10, dtype=torch.float64)
    markers, velocities = physgrad.fluid_sequence(v0, m0, steps=3, spacing=(1.5, 2.0))
    assert markers.shape == (2, 4, 8, 10) and velocities.shape == (2, 4, 2, 8, 10)
    torch.testing.assert_close(markers[:, 0], m0, rtol=0, atol=0)
    torch.testing.assert_close(markers[:, -1], physgrad.fluid(v0, m0, steps=3, spacing=(1.5, 2.0)))
    uniform = torch.ones(1, 2, 8, 10, dtype=torch.float64) * torch.tensor([3.0, -2.0]).double()[None, :, None, None]
    _, still_uniform = physgrad.fluid_sequence(uniform, m0[:1], steps=2)
    torch.testing.assert_close(still_uniform, uniform[:, None].expand(1, 3, 2, 8, 10))
    assert not physgrad.fluid_sequence(v0.float().requires_grad_(), m0.float(), steps=1)[0].requires_grad


def test_one_cached_object_is_safe_to_share_between_threads():
    inputs = [(smooth_velocity(2, 10, 10, seed=s),
               torch.rand(2, 10, 10, generator=generator(s), dtype=torch.float64)) for s in range(4)]
    expected = [physgrad.fluid(v, m, steps=2, grad_mode="adjoint") for v, m in inputs]
    results = [None] * len(inputs)

    def run(i):
        for _ in range(3):
            v = inputs[i][0].clone().requires_grad_()
            y = physgrad.fluid(v, inputs[i][1], steps=2, grad_mode="adjoint")
            y.sum().backward()
        results[i] = (y.detach(), v.grad)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for (v, m), y, (y_thread, g_thread) in zip(inputs, expected, results):
        torch.testing.assert_close(y_thread, y, rtol=0, atol=0)
        v = v.clone().requires_grad_()
        physgrad.fluid(v, m, steps=2, grad_mode="adjoint").sum().backward()
        torch.testing.assert_close(g_thread, v.grad, rtol=0, atol=0)


class MarkersToVelocity(torch.nn.Module):
    def __init__(self, grad_mode: str) -> None:
        super().__init__()
        self.net = torch.nn.Conv2d(2, 2, 3, padding=1, dtype=torch.float64)
        self.physics = physgrad.nn.Fluid(steps=2, grad_mode=grad_mode)

    def forward(self, m0: torch.Tensor, m_t: torch.Tensor) -> torch.Tensor:
        return self.physics(self.net(torch.stack([m0, m_t], dim=1)), m0)


def test_scripted_module_saves_loads_and_backpropagates_in_a_new_process(tmp_path):
    m0 = torch.rand(2, 8, 8, generator=generator(12), dtype=torch.float64)
    m_t = physgrad.fluid(smooth_velocity(2, 8, 8), m0, steps=2)
    for mode in ("adjoint", "physical"):
        torch.manual_seed(0)
        model = MarkersToVelocity(mode)
        scripted = torch.jit.script(model)
        model.zero_grad()
        physgrad.losses.l2(model(m0, m_t), m_t).backward()
        expected = model.net.weight.grad.clone()
        scripted.zero_grad()
        physgrad.losses.l2(scripted(m0, m_t), m_t).backward()
        torch.testing.assert_close(scripted.net.weight.grad, expected)
        torch.jit.save(scripted, str(tmp_path / f"{mode}.pt"))
        torch.save(expected, tmp_path / f"{mode}_expected.pt")
    torch.save((m0, m_t), tmp_path / "data.pt")
    program = f"""
import torch, physgrad
m0, m_t = torch.load({str(tmp_path / 'data.pt')!r})
for mode in ("adjoint", "physical"):
    model = torch.jit.load({str(tmp_path)!r} + f"/{{mode}}.pt")
    physgrad.losses.l2(model(m0, m_t), m_t).backward()
    torch.save(model.net.weight.grad, {str(tmp_path)!r} + f"/{{mode}}_grad.pt")
"""
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY / "python"))
    subprocess.run([sys.executable, "-c", program], check=True, env=environment, timeout=120)
    for mode in ("adjoint", "physical"):
        torch.testing.assert_close(torch.load(tmp_path / f"{mode}_grad.pt"),
                                   torch.load(tmp_path / f"{mode}_expected.pt"))


def test_experiment_trains_two_iterations_and_plots_an_example(tmp_path):
    from physgrad import fluid_plots, training
    from physgrad.experiments import get_experiment
    experiment = get_experiment("fluid", shape=(16, 16), steps=2, lbfgs_iterations=2)
    data = experiment.make_data(0)
    state = data.state_dict()
    batch = data.sample(2)
    assert batch.x_star.shape == (2, 2, 16, 16) and batch.y_star.shape == batch.m0.shape == (2, 16, 16)
    assert set(batch.m0.unique().tolist()) <= {0.0, 1.0} and batch.m0.sum() > 0
    data.load_state_dict(state)
    torch.testing.assert_close(data.sample(2), batch, rtol=0, atol=0)  # seeded and restartable
    histories = {}
    for method in ("adam", "adam+pg", "adam+lbfgs"):
        history = training.train(experiment, method, iterations=2, batch_size=2, seed=0, progress=False)
        assert not history.diverged and len(history.x_mae) == 2
        assert all(math.isfinite(v) for v in history.x_mae + history.y_loss)
        histories[method] = history
    path = fluid_plots.plot_predictions(experiment, histories, str(tmp_path / "example.png"))
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = experiment.evaluate({m: h.network for m, h in histories.items()}, str(tmp_path), test_size=2)
    assert set(report["x_mae"]) == set(histories) and "adam+pg" in report["text"]
    assert Path(report["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
