#!/usr/bin/env python3
"""The spectral Poisson solver against the Cholesky-preconditioned CG and against FFTW alone.

    PYTHONPATH=python /usr/bin/python3 benchmarks/bench_poisson_spectral.py [--quick] [--out results.json]

Cases (each a median over repetitions; the compared variants alternate within
each repetition, and the ratio is the median of the per-repetition ratios, so a
burst of load on a shared machine hits both sides):

* the paper's grids, 64x64 and 80x60 (ny = 60, nx = 80) at B = 64, zero
  Dirichlet: the op's forward, and forward + backward in the adjoint and
  physical modes, with solver="spectral" and solver="petsc" (CG, rtol 1e-10,
  sparse Cholesky preconditioner: the op's solver before the spectral one), on
  one thread and on torch's default thread count;
* single solves on one thread (the op's forward, B = 1): 1024x1024 and
  2048x2048 with each boundary, and 128^3 (3-D) with each boundary, beside the
  FFTW transforms the solve executes, planned and timed alone in this process
  (ctypes): the floor of the solve.

Wall time (perf_counter) and this process's CPU time (process_time) are both
reported; on a shared machine the CPU time is the better measure of one core's
work.  This is a benchmark, not a test: nothing fails on slow numbers.
"""
import argparse
import ctypes
import ctypes.util
import datetime
import json
import os
import statistics
import time

import torch

import physgrad

FFTW_ESTIMATE = 1 << 6
KINDS = {"R2HC": 0, "HC2R": 1, "REDFT01": 4, "REDFT10": 5, "RODFT00": 7}
FORWARD = {"dirichlet": "RODFT00", "neumann": "REDFT10", "periodic": "R2HC"}
BACKWARD = {"dirichlet": "RODFT00", "neumann": "REDFT01", "periodic": "HC2R"}


class IoDim(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int), ("is_", ctypes.c_int), ("os", ctypes.c_int)]


def load_fftw():
    fftw = ctypes.CDLL(ctypes.util.find_library("fftw3") or "libfftw3.so.3")
    fftw.fftw_malloc.restype = ctypes.c_void_p
    fftw.fftw_malloc.argtypes = [ctypes.c_size_t]
    fftw.fftw_free.argtypes = [ctypes.c_void_p]
    ip, vp = ctypes.POINTER(ctypes.c_int), ctypes.c_void_p
    fftw.fftw_plan_many_dft_r2c.restype = vp
    fftw.fftw_plan_many_dft_r2c.argtypes = [ctypes.c_int, ip, ctypes.c_int, vp, ip, ctypes.c_int, ctypes.c_int,
                                            vp, ip, ctypes.c_int, ctypes.c_int, ctypes.c_uint]
    fftw.fftw_plan_many_r2r.restype = vp
    fftw.fftw_plan_many_r2r.argtypes = [ctypes.c_int, ip, ctypes.c_int, vp, ip, ctypes.c_int, ctypes.c_int, vp, ip,
                                        ctypes.c_int, ctypes.c_int, ip, ctypes.c_uint]
    fftw.fftw_plan_guru_r2r.restype = vp
    fftw.fftw_plan_guru_r2r.argtypes = [ctypes.c_int, ctypes.POINTER(IoDim), ctypes.c_int, ctypes.POINTER(IoDim),
                                        vp, vp, ip, ctypes.c_uint]
    fftw.fftw_execute.argtypes = [vp]
    fftw.fftw_destroy_plan.argtypes = [vp]
    return fftw


class TransformFloor:
    """The transforms one spectral solve executes (cphys/src/poisson_transforms.c),
    each forward and backward once, on FFTW_ESTIMATE plans of this process."""

    def __init__(self, fftw, shape, boundary):
        self.fftw, self.plans, self.buffers = fftw, [], []
        dims, size = len(shape), 1
        for n in shape:
            size *= n
        nx, rows = shape[-1], size // shape[-1]
        grid = self._buffer(size)
        if boundary[-1] == "dirichlet":  # the rows' odd extensions, r2c, in place, twice
            length = 2 * (nx + 1)
            padded = self._buffer(rows * (length + 2))
            n = (ctypes.c_int * 1)(length)
            for _ in range(2):
                self._add(fftw.fftw_plan_many_dft_r2c(1, n, rows, padded, None, 1, length + 2, padded, None, 1,
                                                      length // 2 + 1, FFTW_ESTIMATE))
        else:
            n = (ctypes.c_int * 1)(nx)
            for kind in (FORWARD[boundary[-1]], BACKWARD[boundary[-1]]):
                self._add(fftw.fftw_plan_many_r2r(1, n, rows, grid, None, 1, nx, grid, None, 1, nx,
                                                  (ctypes.c_int * 1)(KINDS[kind]), FFTW_ESTIMATE))
        if dims == 3:
            axis = (IoDim * 1)(IoDim(shape[1], nx, nx))
            loops = (IoDim * 2)(IoDim(shape[0], shape[1] * nx, shape[1] * nx), IoDim(nx, 1, 1))
            for kind in (FORWARD[boundary[1]], BACKWARD[boundary[1]]):
                self._add(fftw.fftw_plan_guru_r2r(1, axis, 2, loops, grid, grid, (ctypes.c_int * 1)(KINDS[kind]),
                                                  FFTW_ESTIMATE))
        if boundary[0] != "dirichlet":  # a Dirichlet first axis is eliminated, not transformed
            inner, n = size // shape[0], (ctypes.c_int * 1)(shape[0])
            for kind in (FORWARD[boundary[0]], BACKWARD[boundary[0]]):
                self._add(fftw.fftw_plan_many_r2r(1, n, inner, grid, None, inner, 1, grid, None, inner, 1,
                                                  (ctypes.c_int * 1)(KINDS[kind]), FFTW_ESTIMATE))

    def _buffer(self, count):
        pointer = self.fftw.fftw_malloc(8 * count)
        ctypes.memset(pointer, 0, 8 * count)
        self.buffers.append(pointer)
        return pointer

    def _add(self, plan):
        if not plan:
            raise RuntimeError("FFTW could not plan a transform")
        self.plans.append(plan)

    def __call__(self):
        for plan in self.plans:
            self.fftw.fftw_execute(plan)

    def close(self):
        for plan in self.plans:
            self.fftw.fftw_destroy_plan(plan)
        for pointer in self.buffers:
            self.fftw.fftw_free(pointer)


def timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(variants, repetitions):
    """Runs the variants alternately; returns per variant the median wall and CPU
    seconds, and the per-repetition ratios of the first variant to each other one."""
    for function in variants.values():
        function()  # warm-up: plans, factorizations, caches
    samples = {name: [] for name in variants}
    for _ in range(repetitions):
        for name, function in variants.items():
            samples[name].append(timed(function))
    names = list(variants)
    result = {name: {"wall_ms": 1e3 * statistics.median(s[0] for s in samples[name]),
                     "cpu_ms": 1e3 * statistics.median(s[1] for s in samples[name])} for name in names}
    for other in names[1:]:
        pairs = list(zip(samples[names[0]], samples[other]))
        result[other]["ratio_to_" + names[0]] = statistics.median(b[0] / a[0] for a, b in pairs)
        result[other]["cpu_ratio_to_" + names[0]] = statistics.median(b[1] / max(a[1], 1e-9) for a, b in pairs)
    return result


def paper_grids(threads, repetitions):
    rows = []
    torch.set_num_threads(threads)
    for shape in ((64, 64), (60, 80)):
        x = torch.randn(64, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        g = torch.randn_like(x)

        def forward(solver):
            return lambda: physgrad.poisson(x, solver=solver)

        def backward(solver, mode):
            def run():
                leaf = x.clone().requires_grad_()
                physgrad.poisson(leaf, grad_mode=mode, solver=solver).backward(g)
            return run

        for case, make in (("forward", forward), ("adjoint", lambda s: backward(s, "adjoint")),
                           ("physical", lambda s: backward(s, "physical"))):
            result = compare({"spectral": make("spectral"), "petsc": make("petsc")}, repetitions)
            rows.append({"grid": f"{shape[1]}x{shape[0]}", "batch": 64, "threads": threads, "case": case,
                         "spectral_ms": result["spectral"]["wall_ms"], "petsc_ms": result["petsc"]["wall_ms"],
                         "speedup": result["petsc"]["ratio_to_spectral"],
                         "spectral_cpu_ms": result["spectral"]["cpu_ms"], "petsc_cpu_ms": result["petsc"]["cpu_ms"],
                         "cpu_speedup": result["petsc"]["cpu_ratio_to_spectral"]})
    return rows


def single_solves(fftw, quick, repetitions):
    torch.set_num_threads(1)
    rows = []
    cases = [((256, 256), b) for b in ("dirichlet",)] if quick else (
        [((1024, 1024), b) for b in ("dirichlet", "neumann", "periodic")] +
        [((2048, 2048), b) for b in ("dirichlet", "neumann", "periodic")] +
        [((128, 128, 128), b) for b in ("dirichlet", "neumann", "periodic")])
    for shape, boundary in cases:
        x = torch.randn(1, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        spacing = (1.0,) * len(shape)
        floor = TransformFloor(fftw, shape, (boundary,) * len(shape))
        try:
            def solve():
                return physgrad.poisson(x, spacing=spacing, boundary=boundary)
            result = compare({"fftw": floor, "solve": solve}, repetitions)
        finally:
            floor.close()
        rows.append({"grid": "x".join(map(str, shape)), "boundary": boundary,
                     "solve_wall_ms": result["solve"]["wall_ms"], "solve_cpu_ms": result["solve"]["cpu_ms"],
                     "fftw_wall_ms": result["fftw"]["wall_ms"], "fftw_cpu_ms": result["fftw"]["cpu_ms"],
                     "solve_over_fftw": result["solve"]["ratio_to_fftw"],
                     "solve_over_fftw_cpu": result["solve"]["cpu_ratio_to_fftw"]})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repetitions (a smoke run)")
    parser.add_argument("--repetitions", type=int, default=None, help="repetitions per case (default 21, quick 3)")
    parser.add_argument("--out", help="write the results as JSON to this file")
    args = parser.parse_args()
    repetitions = args.repetitions or (3 if args.quick else 21)
    default_threads = torch.get_num_threads()
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "load_average": os.getloadavg(),
              "nproc": os.cpu_count(), "torch_default_threads": default_threads,
              "paper_grids": paper_grids(1, repetitions)}
    if default_threads > 1:
        report["paper_grids"] += paper_grids(default_threads, repetitions)
    report["single_solves"] = single_solves(load_fftw(), args.quick, max(3, repetitions // 3))
    report["load_average_after"] = os.getloadavg()
    print(f"{'grid':>8} {'B':>3} {'thr':>3} {'case':>9} {'spectral ms (cpu)':>18} {'petsc ms (cpu)':>16} "
          f"{'speedup (cpu)':>14}")
    for r in report["paper_grids"]:
        print(f"{r['grid']:>8} {r['batch']:>3} {r['threads']:>3} {r['case']:>9} {r['spectral_ms']:8.2f} "
              f"({r['spectral_cpu_ms']:6.2f}) {r['petsc_ms']:7.2f} ({r['petsc_cpu_ms']:6.2f}) "
              f"{r['speedup']:6.2f} ({r['cpu_speedup']:5.2f})")
    print(f"\n{'grid':>12} {'boundary':>9} {'solve ms (cpu)':>16} {'fftw ms (cpu)':>15} {'solve/fftw (cpu)':>17}")
    for r in report["single_solves"]:
        print(f"{r['grid']:>12} {r['boundary']:>9} {r['solve_wall_ms']:8.1f} ({r['solve_cpu_ms']:5.1f}) "
              f"{r['fftw_wall_ms']:7.1f} ({r['fftw_cpu_ms']:5.1f}) {r['solve_over_fftw']:8.2f} "
              f"({r['solve_over_fftw_cpu']:5.2f})")
    print(f"\nload average before {report['load_average']}, after {report['load_average_after']}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
