"""Sections of benchmarks/bench_ops.py beyond the cases: the FFTW floor of the heat
op (``build/bench_heat_fftw``), the PETSc preconditioners of Poisson and of the
fluid's pressure solve, and the machine's description."""
import os
import platform
import subprocess
import sys
from typing import Callable, Dict, List, Optional

import torch

import physgrad
import references
from bench_cases import Config, rel_diff, fluid_inputs, grid_name, poisson_inputs
from bench_timing import ForwardRunner, measure


def run_fftw_floor(build_dir: str, cfg: Config, quick: bool) -> Optional[Dict]:
    program = os.path.join(build_dir, "bench_heat_fftw")
    if not os.path.exists(program):
        print(f"  {program} not built: no FFTW floor", file=sys.stderr)
        return None
    batch, n = max(cfg.heat_batches), cfg.heat_grid[0]
    result = {"batch": batch, "grid": grid_name(cfg.heat_grid), "threads": {}}
    for threads in cfg.threads:
        done = subprocess.run([program, str(batch), str(n), "5" if quick else "60", str(threads)],
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            print(f"  bench_heat_fftw failed: {done.stderr.strip()}", file=sys.stderr)
            return None
        rows = {}
        for line in done.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and not line.startswith("#"):
                rows[parts[0]] = {"median_ms": float(parts[1]), "min_ms": float(parts[2])}
        result["threads"][str(threads)] = {"load_average": os.getloadavg()[0], "rows": rows}
    return result


POISSON_PRECONDITIONERS = ("cholesky", "icc", "none", "jacobi", "gamg", "hypre")
FLUID_PRECONDITIONERS = {"icc": "-physgrad_fluid_pc_type icc -physgrad_fluid_pc_factor_shift_type nonzero",
                         "cholesky": "-physgrad_fluid_pc_type cholesky -physgrad_fluid_pc_factor_shift_type nonzero",
                         "none": "-physgrad_fluid_pc_type none"}


def _with_options(options: str, work: Callable[[], Dict]) -> Dict:
    physgrad.clear_solver_options()
    try:
        physgrad.set_solver_options(options)
        return work()
    except RuntimeError as error:  # e.g. a PETSc built without hypre
        return {"error": str(error).splitlines()[0][:200]}
    finally:
        physgrad.clear_solver_options()


def run_preconditioners(cfg: Config) -> Dict[str, List[Dict]]:
    """Forward solves with each PETSc preconditioner: Poisson at the paper's grids
    (default rtol 1e-10 and SIP's 1e-5), the fluid's pressure solves."""
    torch.set_num_threads(1)
    poisson_rows, fluid_rows = [], []
    for shape in cfg.poisson_grids:
        x, _ = poisson_inputs(shape, cfg.preconditioner_batch)
        laplace = references.PoissonCG().minus_laplace
        for pc in POISSON_PRECONDITIONERS:
            for rtol in (1e-10, 1e-5):
                def work(rtol=rtol):
                    fn = lambda v: physgrad.poisson(v, rtol=rtol)  # noqa: E731
                    timings = measure(ForwardRunner(fn, x), cfg)
                    y = fn(x)
                    return {"forward": timings["forward"],
                            "iterations": max(physgrad.solve_stats("poisson").iterations),
                            "true_relative_residual": rel_diff(-laplace(y), x)}

                row = {"grid": grid_name(shape), "batch": cfg.preconditioner_batch, "pc": pc, "rtol": rtol,
                       "load_average": os.getloadavg()[0]}
                row.update(_with_options(f"-physgrad_poisson_pc_type {pc}", work))
                poisson_rows.append(row)
    v0, m0, _ = fluid_inputs(cfg.fluid_grid, cfg.fluid_steps, cfg.preconditioner_batch, cfg.fluid_atol)
    reference = None
    for pc, options in FLUID_PRECONDITIONERS.items():
        def work():
            fn = lambda v: physgrad.fluid(v, m0, steps=cfg.fluid_steps, pressure_atol=cfg.fluid_atol)  # noqa: E731
            timings = measure(ForwardRunner(fn, v0), cfg)
            m = fn(v0)
            return {"forward": timings["forward"], "m": m,
                    "iterations_per_sample": max(physgrad.solve_stats("fluid").iterations)}

        row = {"grid": f"{grid_name(cfg.fluid_grid)}x{cfg.fluid_steps}steps", "batch": cfg.preconditioner_batch,
               "pc": pc, "atol": cfg.fluid_atol, "load_average": os.getloadavg()[0]}
        row.update(_with_options(options, work))
        if "m" in row:
            m = row.pop("m")
            reference = m if reference is None else reference
            row["difference_to_icc"] = rel_diff(m, reference)
        fluid_rows.append(row)
    return {"poisson": poisson_rows, "fluid": fluid_rows}


def machine_info() -> Dict:
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    return {"nproc": os.cpu_count(), "model": model, "python": platform.python_version(),
            "torch": torch.__version__, "torch_default_threads": torch.get_num_threads(),
            "physgrad": physgrad.library_version(), "platform": platform.platform()}
