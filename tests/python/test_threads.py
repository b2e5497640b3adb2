"""Concurrency: every op, in every mode, forward and backward, from four Python
threads at once (with a fifth making failing calls), gives bitwise the results
and statistics of serial calls; and ops inside DataLoader worker processes
(fork after PETSc and OpenMP have started in the parent, and spawn) give the
values of the main process. See docs/reliability.md, "Guarantees".
"""
from __future__ import annotations

import random
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
import torch

import physgrad
from op_catalog import (ALL_OPS, BY_NAME, F64, PACKET, OpDataset, OpSpec, as_tuple, compute_all, generator,
                        two_threads_per_worker)

STATS_OPS = {"poisson", "heat", "fluid", "wave_packet", "wave_packet_fit"}  # ops that record solve_stats


@pytest.fixture(autouse=True)
def silent(capfd):
    """Nothing reaches fds 1 and 2, from this process or from its workers."""
    yield
    assert capfd.readouterr() == ("", "")


def shaped(op: OpSpec, inputs: List[torch.Tensor], variant: int) -> Tuple[List[torch.Tensor], Dict[str, Any]]:
    """Variant 1 changes the shape (a smaller grid, a flat sine, fewer samples)."""
    if variant == 0:
        return inputs, {}
    if op.name in ("poisson", "heat"):
        return [inputs[0][:, :4, :5].contiguous()], {}
    if op.name in ("fluid", "fluid_sequence"):
        return [inputs[0][..., :5, :4].contiguous(), inputs[1][..., :5, :4].contiguous()], {}
    if op.name in ("sine", "sine_nearest_minimum"):
        return [t.reshape(-1) for t in inputs], {}
    if op.name == "wave_packet":
        return inputs, {"samples": 48}
    return inputs, {}


def run_task(op: OpSpec, inputs: List[torch.Tensor], mode: Optional[str], options: Dict[str, Any]) -> Tuple:
    """Outputs, gradients and this thread's statistics of one call."""
    if mode is None:
        results = tuple(as_tuple(op.call(inputs, **options)))
    else:
        y, grads = op.gradients(inputs, mode, **options)
        results = (y,) + tuple(grads)
    stats = physgrad.solve_stats(op.name) if op.name in STATS_OPS else None
    return results, stats


def tasks() -> List[Tuple[str, Callable[[], Tuple]]]:
    """Every op x every mode x two batch sizes and shapes."""
    result = []
    for op in ALL_OPS:
        for variant, batch in enumerate((1, 3)):
            inputs, options = shaped(op, op.make(batch, 20 + variant), variant)
            for mode in op.modes or (None,):
                name = f"{op.name}-{mode or 'forward'}-{variant}"
                result.append((name, lambda op=op, i=inputs, m=mode, o=options: run_task(op, i, m, o)))
    return result


def assert_identical(name: str, got: Tuple, expected: Tuple) -> None:
    (results, stats), (expected_results, expected_stats) = got, expected
    assert len(results) == len(expected_results), name
    for result, reference in zip(results, expected_results):
        assert (result is None) == (reference is None), name
        assert result is None or torch.equal(result, reference), name
    assert stats == expected_stats, name


def hostile_calls(stop: threading.Event, errors: List[str]) -> None:
    """Failing calls on the same ops while the others run: they must raise, and
    must not disturb the other threads' results or statistics."""
    nan = torch.full((2, 5, 6), float("nan"), dtype=F64)
    while not stop.is_set():
        for call in (lambda: physgrad.poisson(nan), lambda: physgrad.heat(nan),
                     # atol 1e-300: unreachable even for the default one-iteration (Cholesky) solves
                     lambda: physgrad.fluid(torch.randn(1, 2, 6, 6, dtype=F64), torch.rand(1, 6, 6, dtype=F64),
                                            pressure_atol=1e-300, pressure_max_iterations=1),
                     lambda: physgrad.sine(torch.ones(3, dtype=F64), torch.zeros(3, dtype=F64)),
                     lambda: physgrad.wave_packet(torch.ones(1, 3, dtype=F64))):
            try:
                call()
                errors.append("a hostile call did not raise")
            except (RuntimeError, ValueError):
                pass


def test_concurrent_calls_from_four_threads_equal_serial_calls_bitwise():
    work = tasks()
    expected = {name: task() for name, task in work}  # serial, on this thread
    results: Dict[int, List[Tuple[str, Tuple]]] = {}
    errors: List[str] = []

    def worker(index: int) -> None:
        order = list(work) * 3
        random.Random(index).shuffle(order)  # different ops, modes and shapes overlap
        try:
            results[index] = [(name, task()) for name, task in order]
        except Exception as error:  # reported below, with the thread
            errors.append(f"thread {index}: {type(error).__name__}: {error}")

    stop = threading.Event()
    hostile = threading.Thread(target=hostile_calls, args=(stop, errors))
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    hostile.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    stop.set()
    hostile.join(timeout=60)
    assert not any(t.is_alive() for t in threads + [hostile]), "a thread hung"
    assert not errors, errors
    for index in range(4):
        assert len(results[index]) == 3 * len(work)
        for name, got in results[index]:
            assert_identical(name, got, expected[name])


def test_grad_mode_blocks_and_statistics_are_per_thread():
    x = torch.randn(2, 6, 6, generator=generator(30), dtype=F64)
    g = torch.randn(2, 6, 6, generator=generator(31), dtype=F64)
    expected = {}
    for mode in ("adjoint", "physical"):
        leaf = x.clone().requires_grad_()
        physgrad.poisson(leaf, grad_mode=mode).backward(g)
        expected[mode] = leaf.grad
    barrier, seen = threading.Barrier(2), {}

    def worker(mode: str, batch: int) -> None:
        with physgrad.grad_mode(mode):
            barrier.wait()  # both blocks are open at once
            for _ in range(10):
                leaf = x.clone().requires_grad_()
                physgrad.poisson(leaf).backward(g)
                assert torch.equal(leaf.grad, expected[mode])
                physgrad.heat(torch.zeros(batch, 3, 3, dtype=F64))
                assert len(physgrad.solve_stats("heat").converged) == batch
            seen[mode] = physgrad.solve_stats("poisson").phase

    threads = [threading.Thread(target=worker, args=args) for args in (("adjoint", 1), ("physical", 4))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # each thread sees its own last call: the adjoint solve, the physical gradient's direct stencil
    assert seen == {"adjoint": "adjoint", "physical": "physical"}


def check_loader(start_method: str, worker_init_fn=None) -> None:
    loader = torch.utils.data.DataLoader(OpDataset(4), batch_size=None, num_workers=2, timeout=120,
                                         multiprocessing_context=start_method, worker_init_fn=worker_init_fn)
    items = list(loader)
    assert len(items) == 4
    for index, item in enumerate(items):
        expected = compute_all(index)
        assert item.keys() == expected.keys()
        for key, value in expected.items():
            assert torch.equal(item[key], value), (start_method, index, key)


def test_dataloader_fork_workers_after_petsc_and_openmp_started_in_the_parent():
    """fork after PETSc initialization, a cached solver, and an OpenMP team in
    the parent; the workers run two OpenMP threads. Regression: the workers hung
    in libgomp (a child cannot start a team after its parent had one)."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        x = torch.randn(4, 20, 20, generator=generator(40), dtype=F64).requires_grad_()
        physgrad.poisson(x).sum().backward()  # PETSc, a cached KSP, and an OpenMP region over the batch
        compute_all(0)
        check_loader("fork", worker_init_fn=two_threads_per_worker)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(physgrad.poisson(x.detach()), physgrad.poisson(x.detach().clone()))  # parent still fine


def test_dataloader_spawn_workers():
    check_loader("spawn")


def _large_inputs(op: OpSpec) -> List[torch.Tensor]:
    """Batches with enough work that every cphys batch loop of the op takes a
    second thread (cphys_loop_threads: about 1 ms of work per thread)."""
    gen = generator(7)
    if op.name == "poisson":  # the physical backward's stencil: ~2 ns per node
        return [torch.randn(256, 64, 64, generator=gen, dtype=F64)]
    if op.name == "heat":  # ~15 ns per cell
        return [torch.randn(64, 64, 64, generator=gen, dtype=F64)]
    if op.name in ("fluid", "fluid_sequence"):  # ~0.15 us per cell and step
        v0 = 1.0 + 0.5 * torch.randn(24, 2, 16, 16, generator=gen, dtype=F64)
        return [v0, torch.rand(24, 16, 16, generator=gen, dtype=F64)]
    if op.name == "fluid_centre_of_mass":  # ~10 ns per cell
        return [torch.rand(256, 64, 64, generator=gen, dtype=F64)]
    if op.name in ("sine", "sine_nearest_minimum"):  # ~30 ns per element
        return [t.repeat(25000 // 3 + 1, 1)[:25000] for t in op.make(3, 7)]
    if op.name in ("wave_packet", "wave_packet_fit"):  # ~1 us per example
        return [t.repeat(700, 1) for t in op.make(3, 7)]
    raise AssertionError(f"no large inputs for {op.name}")


@pytest.mark.parametrize("op", ALL_OPS, ids=repr)
def test_cphys_loops_follow_torch_threads_and_equal_one_thread_bitwise(op: OpSpec):
    """torch.set_num_threads(2) runs the op's batch loops on two OpenMP threads
    (the fluid's samples with their pressure solves taking turns in PETSc):
    every output, gradient and statistic is bitwise the one-thread result."""
    if op.name in ("wave_packet_fit",):
        inputs = [physgrad.wave_packet(_large_inputs(BY_NAME["wave_packet"])[0][:64], **PACKET)]
    else:
        inputs = _large_inputs(op)
    modes = [m for m in op.modes if m != "lbfgs"] or [None]  # lbfgs runs sample by sample
    previous = torch.get_num_threads()
    results = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results[threads] = [run_task(op, inputs, mode, {}) for mode in modes]
    finally:
        torch.set_num_threads(previous)
    for mode, one, two in zip(modes, results[1], results[2]):
        assert_identical(f"{op.name}-{mode}", two, one)
