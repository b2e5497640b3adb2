"""Solver failure policy: what a call does when an iterative solver fails.

- A solve that must succeed for the result to mean anything (the Poisson CG of
  the forward and adjoint, the fluid's pressure CG, and those same solves inside
  the lbfgs mode's objective) fails the call: by default a RuntimeError with
  PETSc's reason and the first failing sample; with ``on_failure="warn"`` one
  warning, every sample's last iterate (a failed sample does not stop the
  batch), and ``physgrad.solve_stats(op)`` saying which samples failed and why.
- A minimizer's iteration budget (``lbfgs`` modes, TAO; the wave packet's
  Gauss-Newton ``physical`` mode; ``wave_packet_fit``) is not a failure: the
  best iterate is returned and the statistics report the budget.
- Non-finite data is an input error, raised whatever ``on_failure`` says
  (except Poisson's forward, whose CG reports it per sample as DIVERGED_NANORINF).

Covered elsewhere, not repeated: test_poisson.py (raise on NaN and on a tiny
max_iterations; warn with the adjoint backward), test_fluid.py (pressure
DIVERGED_ITS raised; warn finishing a batch with the adjoint backward).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import physgrad
from op_catalog import FLUID, HEAT, POISSON, WAVE_PACKET, WAVE_PACKET_FIT, generator

F64 = torch.float64


@pytest.fixture(autouse=True)
def iterative_solvers():
    """ICC(0) for Poisson and the fluid's pressure: these failure paths need CG to
    take more than one iteration (the default Cholesky preconditioners converge in one)."""
    physgrad.set_solver_options("-physgrad_poisson_pc_type icc -physgrad_fluid_pc_type icc "
                                "-physgrad_fluid_pc_factor_shift_type nonzero")
    yield
    physgrad.clear_solver_options()


@pytest.fixture(autouse=True)
def silent(capfd):
    """Failures are reported through Python only: nothing reaches fds 1 and 2."""
    yield
    assert capfd.readouterr() == ("", "")


def poisson_batch_with_a_nan_sample() -> torch.Tensor:
    x = torch.randn(3, 6, 7, generator=generator(0), dtype=F64)
    x[1, 2, 3] = float("nan")
    return x


def test_poisson_forward_failure_names_the_sample_and_petscs_reason_and_records_stats():
    x = poisson_batch_with_a_nan_sample()
    with pytest.raises(RuntimeError, match=r"Poisson solve of sample 1 did not converge: DIVERGED_NANORINF"):
        physgrad.poisson(x)
    stats = physgrad.solve_stats("poisson")  # recorded by the failed call too
    assert stats.phase == "forward" and stats.converged == [True, False, True]
    assert stats.reasons[1] == "DIVERGED_NANORINF" and stats.reasons[0].startswith("CONVERGED")


def test_poisson_warn_returns_the_good_samples_exactly_and_reports_the_bad_one():
    x = poisson_batch_with_a_nan_sample()
    with pytest.warns(RuntimeWarning, match=r"forward solve did not converge for samples \[1\] \(DIVERGED_NANORINF\)"):
        y = physgrad.poisson(x, on_failure="warn")
    stats = physgrad.solve_stats("poisson")
    assert stats.converged == [True, False, True] and not stats.all_converged
    good = physgrad.poisson(x[[0, 2]])
    assert torch.equal(y[[0, 2]], good)  # a failed sample does not disturb the others


def test_poisson_iteration_limit_returns_the_last_iterate(laplacian):
    x = torch.randn(2, 12, 12, generator=generator(1), dtype=F64)
    with pytest.warns(RuntimeWarning, match=r"samples \[0, 1\] \(DIVERGED_ITS, DIVERGED_ITS\)"):
        y = physgrad.poisson(x, max_iterations=3, rtol=1e-12, on_failure="warn")
    stats = physgrad.solve_stats("poisson")
    assert stats.iterations == [3, 3] and stats.converged == [False, False]
    assert all(r > 0 for r in stats.residual_norms)
    matrix = laplacian(12, 12)
    for sample in range(2):  # the last CG iterate: better than the start (0), not yet the solution
        residual = np.linalg.norm(matrix @ y[sample].reshape(-1).numpy() - x[sample].reshape(-1).numpy())
        assert 1e-8 < residual < 0.9 * x[sample].norm().item()


def fluid_batch_where_only_sample_1_needs_iterations():
    """Sample 0 is uniform (divergence-free: every pressure solve converges at
    iteration 0); sample 1 is not."""
    v0 = torch.ones(2, 2, 8, 8, dtype=F64)
    v0[1] += 0.5 * torch.randn(2, 8, 8, generator=generator(2), dtype=F64)
    return v0, torch.rand(2, 8, 8, generator=generator(3), dtype=F64)


def test_fluid_pressure_failure_reports_exactly_the_failing_samples():
    v0, m0 = fluid_batch_where_only_sample_1_needs_iterations()
    options = dict(steps=2, pressure_atol=1e-12, pressure_max_iterations=1)
    with pytest.raises(RuntimeError, match=r"pressure solve 0 of sample 1 did not converge: DIVERGED_ITS"):
        physgrad.fluid(v0, m0, **options)
    with pytest.warns(RuntimeWarning, match=r"did not converge for samples \[1\] \(DIVERGED_ITS\)"):
        m_t = physgrad.fluid(v0, m0, on_failure="warn", **options)
    stats = physgrad.solve_stats("fluid")
    assert stats.converged == [True, False] and stats.reasons[1] == "DIVERGED_ITS"
    assert stats.iterations[0] == 0 and m_t.isfinite().all()
    assert torch.equal(m_t[:1], physgrad.fluid(v0[:1], m0[:1], **options))


@pytest.mark.parametrize("op, data, options, reason", [
    (POISSON, lambda: [torch.zeros(2, 6, 6, dtype=F64)], dict(max_iterations=1, rtol=1e-12),
     "INNER_SOLVE_NOT_CONVERGED"),
    (FLUID, lambda: [torch.ones(2, 2, 6, 6, dtype=F64), torch.rand(2, 6, 6, generator=generator(4), dtype=F64)],
     dict(steps=2, pressure_atol=1e-12, pressure_max_iterations=1), "INNER_SOLVE_NOT_CONVERGED"),
], ids=["poisson", "fluid"])
def test_lbfgs_mode_with_failing_inner_solves_raises_or_warns_with_defined_statistics(op, data, options, reason):
    """The forward converges (zero source, uniform flow: nothing to solve), but
    the objective evaluations of the lbfgs mode meet non-converging inner solves.
    Regression: the failure stopped the batch, left the later samples' gradient
    uninitialized, and solve_stats read garbage (UnicodeDecodeError)."""
    inputs = data()
    grad_y = torch.randn(op.call(inputs).shape, generator=generator(5), dtype=F64)
    with pytest.raises(RuntimeError, match=r"L-BFGS stopped on an unconverged .*sample 0"):
        op.gradients(inputs, "lbfgs", grad_y=grad_y, lbfgs_iterations=3, **options)
    with pytest.warns(UserWarning, match=r"L-BFGS stopped on an unconverged"):
        _, grads = op.gradients(inputs, "lbfgs", grad_y=grad_y, lbfgs_iterations=3, on_failure="warn", **options)
    stats = physgrad.solve_stats(op.name)
    assert stats.phase == "lbfgs" and stats.converged == [False, False] and stats.reasons == [reason, reason]
    assert torch.equal(grads[0], torch.zeros_like(grads[0]))  # each failed sample keeps its start


def objective(op, x, target, **options):
    return 0.5 * ((op.call([x], **options) - target) ** 2).sum(dim=tuple(range(1, target.dim())))


@pytest.mark.parametrize("op", [POISSON, HEAT, WAVE_PACKET], ids=lambda op: op.name)
def test_lbfgs_iteration_budget_is_reported_not_raised_and_returns_the_best_iterate(op):
    x_true, x = op.make(3, 10)[0], op.make(3, 11)[0]
    target = op.call([x_true])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither an error nor a warning
        leaf = x.clone().requires_grad_()
        y = op.call([leaf], "lbfgs", lbfgs_iterations=1)
        y.backward(y.detach() - target)  # y-space target: y - g = target
    stats = physgrad.solve_stats(op.name)
    assert stats.phase == "lbfgs" and stats.iterations == [1, 1, 1]
    assert all(reason == "DIVERGED_MAXITS" or reason.startswith("CONVERGED") for reason in stats.reasons)
    assert (objective(op, x - leaf.grad, target) < objective(op, x, target)).all()


def test_gauss_newton_budget_is_reported_not_raised():
    params = WAVE_PACKET.make(3, 12)[0]
    noise = 0.5 * torch.randn(3, 64, generator=generator(13), dtype=F64)
    target = WAVE_PACKET.call([params]) + noise  # no exact solution: a sample may use up the 20 steps
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        leaf = params.clone().requires_grad_()
        y = WAVE_PACKET.call([leaf], "physical")
        y.backward(y.detach() - target)
    stats = physgrad.solve_stats("wave_packet")
    assert stats.phase == "physical" and len(stats.reasons) == 3
    # Gauss-Newton accepts only steps that lower the objective: the returned iterate is better than the start.
    assert (objective(WAVE_PACKET, params - leaf.grad, target) < objective(WAVE_PACKET, params, target)).all()
    assert all(r in ("DIVERGED_MAX_STEPS", "CONVERGED_NO_DECREASE", "CONVERGED_OUTPUT_CHANGE") or
               r.startswith("CONVERGED") for r in stats.reasons), stats.reasons
    assert [r == "DIVERGED_MAX_STEPS" for r in stats.reasons] == [not ok for ok in stats.converged]
    assert (objective(WAVE_PACKET, params - leaf.grad, target) <= objective(WAVE_PACKET, params, target)).all()


def test_fit_iteration_budget_is_reported_per_example():
    target = WAVE_PACKET_FIT.make(3, 14)[0]
    params, converged = WAVE_PACKET_FIT.call([target], max_iterations=1)
    stats = physgrad.solve_stats("wave_packet_fit")
    assert stats.phase == "fit" and stats.reasons == ["DIVERGED_MAXITS"] * 3
    assert converged.tolist() == stats.converged == [False] * 3 and params.isfinite().all()


@pytest.mark.parametrize("call, words", [
    (lambda: physgrad.fluid(torch.full((1, 2, 6, 6), float("nan"), dtype=F64), torch.ones(1, 6, 6, dtype=F64),
                            on_failure="warn"), "v0[0] is not finite"),
    (lambda: physgrad.heat(torch.full((1, 4, 4), float("inf"), dtype=F64), on_failure="warn"), "is inf"),
    (lambda: POISSON.gradients([torch.ones(1, 4, 4, dtype=F64)], "lbfgs", on_failure="warn",
                               grad_y=torch.full((1, 4, 4), float("nan"), dtype=F64)), "target[0] is nan"),
], ids=["fluid-v0", "heat-x", "poisson-lbfgs-grad_y"])
def test_non_finite_data_is_an_error_even_under_warn(call, words):
    with pytest.raises(RuntimeError) as info:
        call()
    assert words in str(info.value)


def test_training_loop_survives_a_bad_sample_under_warn():
    """A corrupt example (its network output overflows to inf) fails the Poisson
    solve of its sample only; with on_failure="warn" the loop masks it with
    solve_stats and trains on the rest. With the default it stops at once."""
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 1, 3, padding=1, dtype=F64)
    with torch.no_grad():
        net.weight.fill_(0.3)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    inputs = torch.randn(4, 1, 8, 8, generator=generator(6), dtype=F64)
    inputs[2] = 1e308  # finite, but 9 taps of 0.3 * 1e308 overflow
    y_star = physgrad.poisson(torch.randn(4, 8, 8, generator=generator(7), dtype=F64))

    def step(on_failure: str) -> float:
        optimizer.zero_grad()
        y = physgrad.poisson(net(inputs)[:, 0], grad_mode="physical", on_failure=on_failure)
        ok = torch.tensor(physgrad.solve_stats("poisson").converged)
        loss = physgrad.losses.l2(y[ok], y_star[ok])
        loss.backward()
        optimizer.step()
        return loss.item()

    with pytest.raises(RuntimeError, match="sample 2 did not converge: DIVERGED_NANORINF"):
        step("raise")
    losses = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(15):
            losses.append(step("warn"))
    assert len(caught) == 15 and all("samples [2]" in str(w.message) for w in caught)
    assert all(p.isfinite().all() for p in net.parameters())
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
