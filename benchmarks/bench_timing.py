"""The timing and memory machinery of benchmarks/bench_ops.py (the cases are in bench_cases.py).

A :class:`Case` builds a :class:`Runner`, whose ``run()`` performs one
repetition and returns its timings; :func:`measure` repeats it after warm-up and
keeps medians; :func:`run_case` times a case at a thread count and records the
load average; :func:`memory_in_subprocess` measures a case's peak memory in a
fresh process (``bench_ops.py --memory-case``).
"""
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import torch

import physgrad

#: the benchmark program, run again for each memory measurement
BENCH_OPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_ops.py")


# ------------------------------------------------------------------ runners
class Runner:
    """One case: ``run()`` performs one repetition and returns its timings (seconds)."""

    def run(self) -> Dict[str, float]:
        raise NotImplementedError


class ForwardRunner(Runner):
    """The map alone, without autograd."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
        self.fn, self.x = fn, x

    def run(self):
        with torch.no_grad():
            start = time.perf_counter()
            self.fn(self.x)
            return {"forward": time.perf_counter() - start}


class TrainRunner(Runner):
    """Forward with autograd, then backward of a fixed dL/dy (as in a training step)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, g: torch.Tensor):
        self.fn, self.x, self.g = fn, x, g

    def run(self):
        x = self.x.detach().requires_grad_()
        start = time.perf_counter()
        y = self.fn(x)
        middle = time.perf_counter()
        y.backward(self.g)
        end = time.perf_counter()
        return {"forward_grad": middle - start, "backward": end - middle, "total": end - start}


class FloorPairRunner(Runner):
    """The heat op's forward + adjoint backward through torch, and its FFTW floor
    (two r2c + c2r pairs of the batch, ``references.FftwFloor``) in the same
    process, alternately; ``ratio/op_over_floor`` pairs them per repetition."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, g: torch.Tensor, floor):
        self.train, self.floor, self.x, self.g = TrainRunner(fn, x, g), floor, x, g

    def run(self):
        op = self.train.run()["total"]
        start = time.perf_counter()
        self.floor.pair(self.x)
        self.floor.pair(self.g)
        floor = time.perf_counter() - start
        return {"op": op, "floor": floor, "ratio/op_over_floor": op / floor}


class StepRunner(Runner):
    """One training step of an experiment: network forward, op, loss, backward, Adam step.
    The network part (forward, backward, step) and the physics part (op forward and
    backward, loss) are timed apart by cutting the graph at the network's output."""

    def __init__(self, experiment, grad_mode: str, batch_size: int, seed: int = 0):
        self.experiment, self.grad_mode = experiment, grad_mode
        torch.manual_seed(seed)
        self.network = experiment.make_network()
        self.network.train()
        method = "adam" if grad_mode == "adjoint" else "adam+pg"
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=experiment.learning_rates[method])
        self.batch = experiment.make_data(seed).sample(batch_size)
        self.initial = {k: v.clone() for k, v in self.network.state_dict().items()}

    def run(self):
        e = self.experiment
        # The same weights every repetition: the cost must not drift with training.
        self.network.load_state_dict(self.initial)
        start = time.perf_counter()
        x = e.predict(self.network, self.batch)
        network_forward = time.perf_counter()
        cut = x.detach().requires_grad_()
        e.y_loss(e.simulate(cut, self.batch, self.grad_mode), self.batch).backward()
        physics = time.perf_counter()
        x.backward(cut.grad)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        end = time.perf_counter()
        return {"network": (network_forward - start) + (end - physics), "physics": physics - network_forward,
                "total": end - start}


class StepPairRunner(Runner):
    """``adam`` and ``adam+pg`` steps alternately, one each per repetition, so that
    both see the same load (on a shared machine the network's time drifts more
    than the physics costs).  Keys ``<method>/network`` etc."""

    METHODS = (("adam", "adjoint"), ("adam+pg", "physical"))

    def __init__(self, experiment, batch_size: int):
        self.steps = {method: StepRunner(experiment, mode, batch_size) for method, mode in self.METHODS}
        self.memory_parts = {method: step.run for method, step in self.steps.items()}

    def run(self):
        timings = {}
        for method, step in self.steps.items():
            timings.update({f"{method}/{key}": value for key, value in step.run().items()})
        # Paired within the repetition (both under the same load): the robust comparison.
        for part in ("total", "physics"):
            timings[f"ratio/{part}"] = timings[f"adam+pg/{part}"] / timings[f"adam/{part}"]
        return timings


@dataclasses.dataclass
class Case:
    id: str            # unique, e.g. "poisson/64x64/B64/physgrad/train:adjoint"
    op: str
    grid: str
    batch: int
    impl: str          # "physgrad", "torch" (reference) or "step" (training)
    kind: str          # "forward", "train" or "step"
    mode: str          # gradient mode ("" for a forward, "autograd" for a reference)
    build: Callable[[], Runner]
    note: str = ""
    sweep: bool = False  # also timed in the thread sweep


# ------------------------------------------------------------------ measuring
def measure(runner: Runner, cfg: Any, repeats: Optional[int] = None, budget_s: Optional[float] = None) -> Dict:
    """Medians (ms) of the runner's timings; keys ``ratio/...`` are dimensionless
    per-repetition ratios, kept as median, quartiles and extremes. ``cfg``: the
    repetitions (``bench_cases.Config``: warmup, repeats, min_repeats, case_budget_s)."""
    repeats, budget_s = repeats or cfg.repeats, budget_s or cfg.case_budget_s
    for _ in range(cfg.warmup):
        runner.run()
    samples: Dict[str, List[float]] = {}
    start = time.perf_counter()
    for repeat in range(repeats):
        for key, value in runner.run().items():
            samples.setdefault(key, []).append(value)
        if repeat + 1 >= cfg.min_repeats and time.perf_counter() - start > budget_s:
            break
    result = {}
    for key, v in samples.items():
        if key.startswith("ratio/"):
            q = statistics.quantiles(v, n=4) if len(v) >= 2 else [v[0]] * 3
            result[key] = {"median": statistics.median(v), "q1": q[0], "q3": q[2], "min": min(v), "max": max(v),
                           "runs": len(v)}
        else:
            result[key] = {"median_ms": 1e3 * statistics.median(v), "min_ms": 1e3 * min(v), "runs": len(v)}
    return result


def run_case(case: Case, cfg: Any, threads: int) -> Dict:
    torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]
    step = case.kind in ("step", "floor")  # paired ratios: more repetitions
    timings = measure(case.build(), cfg, cfg.step_repeats if step else None, cfg.step_budget_s if step else None)
    return {"id": case.id, "op": case.op, "grid": case.grid, "batch": case.batch, "impl": case.impl,
            "kind": case.kind, "mode": case.mode, "note": case.note, "threads": threads,
            "load_average": [load_before, os.getloadavg()[0]], "timings": timings}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _peak_of(run: Callable[[], object]) -> Dict:
    """Reset the peak, run twice (first-call setup such as factorizations and
    plans included): the peak above the RSS before (inputs already made)."""
    rss_before = _status_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        reset = True
    except OSError:
        reset = False
    run()
    run()
    peak = _status_kb("VmHWM")
    return {"peak_rss_mb": peak / 1024.0, "rss_before_mb": rss_before / 1024.0,
            "peak_increase_mb": (peak - rss_before) / 1024.0 if reset else None}


def memory_of_case(case: Case, part: Optional[str] = None) -> Dict:
    """In this (fresh) process: the peak of the case, or of one part of a step pair,
    after PETSc and FFTW have started (their one-time cost is not the case's)."""
    torch.set_num_threads(1)
    physgrad.poisson(torch.ones(1, 3, 3, dtype=torch.float64))
    physgrad.heat(torch.ones(1, 3, 3, dtype=torch.float64))
    runner = case.build()
    return _peak_of(runner.memory_parts[part] if part else runner.run)


def memory_in_subprocess(case: Case, quick: bool) -> Optional[Dict]:
    """The case's peak memory, measured in a fresh process (each part's in its own, for a step pair)."""
    if case.kind == "step":
        return {"parts": {method: _memory_subprocess(case.id, quick, method)
                          for method, _ in StepPairRunner.METHODS}}
    return _memory_subprocess(case.id, quick, None)


def _memory_subprocess(case_id: str, quick: bool, part: Optional[str]) -> Optional[Dict]:
    command = [sys.executable, BENCH_OPS, "--memory-case", case_id] + (["--quick"] if quick else [])
    command += ["--memory-part", part] if part else []
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        print(f"  memory of {case_id} failed: {done.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])
