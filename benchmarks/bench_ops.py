#!/usr/bin/env python3
"""Speed and memory of the physgrad ops and training steps, against plain PyTorch.

    PYTHONPATH=python /usr/bin/python3 benchmarks/bench_ops.py --out benchmarks/results
    (make bench; --quick: tiny sizes, a smoke run of a few seconds)

One process times every case (medians of repeated runs after warm-up; the
load average is recorded with each case, since shared machines are noisy):

* each op's forward (no autograd) and, per gradient mode, forward with
  autograd + backward, at batch 1 and at the paper's batch: Poisson 80x60 and
  64x64 (B = 64, 128), heat 64x64 (B = 128), fluid 64x64 8 steps (B = 64),
  sine (B = 1000), wave packet (B = 100).  ``lbfgs`` runs sample by sample
  (its cost is proportional to B), so Poisson's and the fluid's are measured
  at a capped batch (noted in the table);
* the references of ``benchmarks/references.py`` (batched CG with a conv2d
  stencil, torch.fft, a torch MacCormack + CG fluid, closed forms), with their
  agreement with the op printed and recorded;
* the FFTW floor of the heat op (``build/bench_heat_fftw``: the transforms alone);
* PETSc preconditioners: Poisson's (cholesky, icc, none, jacobi, gamg, hypre) at the paper's
  sizes and tolerances, and the fluid's pressure solve (icc, cholesky, none);
* 1 versus 2 threads (``torch.set_num_threads``, which physgrad follows);
* one training step per experiment (network forward, op, loss, backward, Adam
  step) for ``adam`` and ``adam+pg``, split into network and physics time;
* peak memory of each case: a subprocess per case runs it once to warm up,
  resets the peak (``/proc/self/clear_refs``), runs it again and reports
  ``VmHWM`` minus the resident size before the call.

Writes ``<out>/bench_ops.json`` and ``<out>/bench_ops.md`` (see bench_report.py).
"""
import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(ROOT, "python"))  # physgrad of this checkout (after `make build`)

import bench_report  # noqa: E402
import references  # noqa: E402
import physgrad  # noqa: E402
from physgrad import data as physgrad_data  # noqa: E402
from physgrad import experiments  # noqa: E402
from physgrad.experiments import fluid as fluid_experiment  # noqa: E402


# ------------------------------------------------------------------ configuration
@dataclasses.dataclass
class Config:
    poisson_grids: List[Tuple[int, int]]
    poisson_batches: List[int]
    heat_grid: Tuple[int, int]
    heat_batches: List[int]
    fluid_grid: Tuple[int, int]
    fluid_steps: int
    fluid_batches: List[int]
    fluid_atol: float
    sine_batches: List[int]
    wave_batches: List[int]
    lbfgs_batch_cap: Dict[str, int]
    preconditioner_batch: int
    training: List[Tuple[str, Dict, int]]  # experiment, options, batch
    threads: List[int]
    warmup: int
    repeats: int
    min_repeats: int
    case_budget_s: float
    step_repeats: int      # training-step pairs: more repetitions (their paired ratio is a target)
    step_budget_s: float


def make_config(quick: bool) -> Config:
    if quick:
        return Config(poisson_grids=[(12, 16)], poisson_batches=[1, 4], heat_grid=(16, 16), heat_batches=[1, 4],
                      fluid_grid=(8, 8), fluid_steps=2, fluid_batches=[1, 2], fluid_atol=1e-10,
                      sine_batches=[1, 10], wave_batches=[1, 4], lbfgs_batch_cap={"poisson": 2, "fluid": 1},
                      preconditioner_batch=2,
                      training=[("poisson", {"shape": (16, 16)}, 2), ("heat", {"shape": (16, 16)}, 2),
                                ("fluid", {"shape": (16, 16), "steps": 1}, 2), ("sin", {}, 16),
                                ("wave_packet", {}, 2)],
                      threads=[1, 2], warmup=1, repeats=2, min_repeats=1, case_budget_s=1.0, step_repeats=2,
                      step_budget_s=1.0)
    return Config(poisson_grids=[(60, 80), (64, 64)], poisson_batches=[1, 64, 128], heat_grid=(64, 64),
                  heat_batches=[1, 128], fluid_grid=(64, 64), fluid_steps=8, fluid_batches=[1, 64], fluid_atol=1e-4,
                  sine_batches=[1, 1000], wave_batches=[1, 100], lbfgs_batch_cap={"poisson": 8, "fluid": 2},
                  preconditioner_batch=64,
                  training=[("poisson", {"shape": (64, 64)}, 128), ("heat", {"shape": (64, 64)}, 128),
                            ("fluid", {"shape": (64, 64)}, 64), ("sin", {}, 1000), ("wave_packet", {}, 100)],
                  threads=[1, 2], warmup=1, repeats=7, min_repeats=3, case_budget_s=25.0, step_repeats=21,
                  step_budget_s=75.0)


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


def grid_name(shape) -> str:
    return f"{shape[1]}x{shape[0]}"  # x by y, as the paper writes 80x60


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


# ------------------------------------------------------------------ the ops' cases
def poisson_inputs(shape, batch, seed=0):
    data = physgrad_data.PoissonData(shape=shape, seed=seed, dtype=torch.float64).sample(batch)
    gen = torch.Generator().manual_seed(seed + 1)
    x = data.x_star + 0.1 * torch.randn(data.x_star.shape, generator=gen, dtype=torch.float64)
    return x, physgrad.poisson(x) - data.y_star  # g = dL/dy of the l2 loss against y*


def poisson_cases(cfg: Config, agreement: Optional[Dict]) -> List[Case]:
    cases = []
    for shape in cfg.poisson_grids:
        g_name = grid_name(shape)
        for batch in cfg.poisson_batches:
            paper = batch > 1
            base = f"poisson/{g_name}/B{batch}"

            def inputs(shape=shape, batch=batch):
                return poisson_inputs(shape, batch)

            op = lambda mode: (lambda x: physgrad.poisson(x, grad_mode=mode))  # noqa: E731
            cases.append(Case(f"{base}/physgrad/forward", "poisson", g_name, batch, "physgrad", "forward", "",
                              lambda inputs=inputs, op=op: ForwardRunner(op("physical"), inputs()[0]),
                              sweep=paper))
            for mode in ("adjoint", "physical", "lbfgs"):
                b = batch
                if mode == "lbfgs":  # per sample (cost ~ B): at B = 1 and at the capped largest batch
                    if 1 < batch < max(cfg.poisson_batches):
                        continue
                    b = min(batch, cfg.lbfgs_batch_cap["poisson"])

                def build(mode=mode, b=b, shape=shape):
                    x, g = poisson_inputs(shape, b)
                    return TrainRunner(op(mode), x, g)

                note = f"capped at B={b}: lbfgs runs sample by sample, cost ~ B" if b != batch else ""
                cases.append(Case(f"poisson/{g_name}/B{b}/physgrad/train:{mode}", "poisson", g_name, b,
                                  "physgrad", "train", mode, build, note, sweep=paper and mode != "lbfgs"))
            solver = references.PoissonCG(rtol=1e-10)
            cases.append(Case(f"{base}/torch/forward", "poisson", g_name, batch, "torch", "forward", "",
                              lambda inputs=inputs, s=solver: ForwardRunner(s, inputs()[0])))
            cases.append(Case(f"{base}/torch/train:autograd", "poisson", g_name, batch, "torch", "train", "autograd",
                              lambda inputs=inputs, s=solver: TrainRunner(s, *inputs()), sweep=paper))
            if agreement is not None and batch == max(cfg.poisson_batches):
                x, _ = inputs()
                y_ref, y = solver.solve(x), physgrad.poisson(x)
                laplace = lambda v: -solver.minus_laplace(v)  # noqa: E731
                agreement[f"poisson/{g_name}/B{batch}"] = {
                    "what": "y = laplace^-1 x, rtol 1e-10 (op: PETSc CG, default preconditioner; "
                            "torch: CG, unpreconditioned residual)",
                    "relative_difference": _rel(y, y_ref), "threshold": 1e-6,
                    "op_residual": _rel(laplace(y), x), "torch_residual": _rel(laplace(y_ref), x),
                    "torch_cg_iterations": solver.iterations,
                    "op_iterations": max(physgrad.solve_stats("poisson").iterations)}
    return cases


def heat_inputs(shape, batch, seed=0):
    data = physgrad_data.HeatData(shape=shape, seed=seed, dtype=torch.float64).sample(batch)
    gen = torch.Generator().manual_seed(seed + 1)
    x = data.x_star + 0.05 * torch.randn(data.x_star.shape, generator=gen, dtype=torch.float64)
    return x, physgrad.heat(x) - data.y_star


def heat_cases(cfg: Config, agreement: Optional[Dict]) -> List[Case]:
    cases, shape = [], cfg.heat_grid
    g_name = grid_name(shape)
    kernel = references.heat_kernel(shape, 8.0)
    ref = lambda x: references.heat(x, kernel)  # noqa: E731
    for batch in cfg.heat_batches:
        paper = batch == max(cfg.heat_batches)
        base = f"heat/{g_name}/B{batch}"

        def inputs(batch=batch):
            return heat_inputs(shape, batch)

        op = lambda mode: (lambda x: physgrad.heat(x, grad_mode=mode))  # noqa: E731
        cases.append(Case(f"{base}/physgrad/forward", "heat", g_name, batch, "physgrad", "forward", "",
                          lambda inputs=inputs: ForwardRunner(op("physical"), inputs()[0]), sweep=paper))
        for mode in ("adjoint", "physical", "lbfgs"):
            cases.append(Case(f"{base}/physgrad/train:{mode}", "heat", g_name, batch, "physgrad", "train", mode,
                              lambda inputs=inputs, mode=mode: TrainRunner(op(mode), *inputs()),
                              sweep=paper and mode != "lbfgs"))
        if paper:
            cases.append(Case(f"{base}/physgrad/floor:adjoint", "heat", g_name, batch, "physgrad", "floor", "adjoint",
                              lambda inputs=inputs, batch=batch: FloorPairRunner(
                                  op("adjoint"), *inputs(), references.FftwFloor(batch, shape)),
                              note="op fwd+bwd vs FFTW's transforms in the same process"))
        cases.append(Case(f"{base}/torch/forward", "heat", g_name, batch, "torch", "forward", "",
                          lambda inputs=inputs: ForwardRunner(ref, inputs()[0])))
        cases.append(Case(f"{base}/torch/train:autograd", "heat", g_name, batch, "torch", "train", "autograd",
                          lambda inputs=inputs: TrainRunner(ref, *inputs()), sweep=paper))
        if agreement is not None and paper:
            x, g = inputs()
            xr = x.clone().requires_grad_()
            references.heat(xr, kernel).backward(g)
            xo = x.clone().requires_grad_()
            physgrad.heat(xo, grad_mode="adjoint").backward(g)
            agreement[f"heat/{g_name}/B{batch}"] = {
                "what": "forward and adjoint backward vs torch.fft (nu_t = 8)",
                "relative_difference": max(_rel(physgrad.heat(x), ref(x)), _rel(xo.grad, xr.grad)),
                "threshold": 1e-12}
    return cases


def fluid_inputs(shape, steps, batch, atol, seed=0):
    data = fluid_experiment.FluidData(shape=shape, spacing=(2.0, 2.0), seed=seed, steps=steps,
                                                dtype=torch.float64).sample(batch)
    gen = torch.Generator().manual_seed(seed + 1)
    v0 = data.x_star + 0.1 * torch.randn(data.x_star.shape, generator=gen, dtype=torch.float64)
    m0 = data.m0.to(torch.float64)
    return v0, m0, physgrad.fluid(v0, m0, steps=steps, pressure_atol=atol) - data.y_star


def fluid_cases(cfg: Config, agreement: Optional[Dict]) -> List[Case]:
    cases, shape, steps, atol = [], cfg.fluid_grid, cfg.fluid_steps, cfg.fluid_atol
    g_name = f"{grid_name(shape)}x{steps}steps"
    for batch in cfg.fluid_batches:
        paper = batch == max(cfg.fluid_batches)
        base = f"fluid/{g_name}/B{batch}"

        def inputs(batch=batch):
            return fluid_inputs(shape, steps, batch, atol)

        def op(mode, m0):
            return lambda v: physgrad.fluid(v, m0, steps=steps, grad_mode=mode, pressure_atol=atol)

        def ref(m0, fluid=references.TorchFluid(shape, steps=steps, atol=atol)):
            return lambda v: fluid(v, m0)

        def forward_build(inputs=inputs):
            v0, m0, _ = inputs()
            return ForwardRunner(op("physical", m0), v0)

        cases.append(Case(f"{base}/physgrad/forward", "fluid", g_name, batch, "physgrad", "forward", "",
                          forward_build, sweep=paper))
        for mode in ("adjoint", "physical", "lbfgs"):
            b = min(batch, cfg.lbfgs_batch_cap["fluid"]) if mode == "lbfgs" else batch

            def build(mode=mode, b=b):
                v0, m0, g = fluid_inputs(shape, steps, b, atol)
                return TrainRunner(op(mode, m0), v0, g)

            note = f"capped at B={b}: lbfgs runs sample by sample, cost ~ B" if b != batch else ""
            cases.append(Case(f"fluid/{g_name}/B{b}/physgrad/train:{mode}" if b != batch else
                              f"{base}/physgrad/train:{mode}", "fluid", g_name, b, "physgrad", "train", mode, build,
                              note, sweep=paper and mode != "lbfgs"))

        def ref_forward(inputs=inputs):
            v0, m0, _ = inputs()
            return ForwardRunner(ref(m0), v0)

        def ref_train(inputs=inputs):
            v0, m0, g = inputs()
            return TrainRunner(ref(m0), v0, g)

        cases.append(Case(f"{base}/torch/forward", "fluid", g_name, batch, "torch", "forward", "", ref_forward))
        cases.append(Case(f"{base}/torch/train:autograd", "fluid", g_name, batch, "torch", "train", "autograd",
                          ref_train, sweep=paper))
        if agreement is not None and paper:
            v0, m0, g = inputs()
            torch_fluid = references.TorchFluid(shape, steps=steps, atol=atol)
            vr, vo = v0.clone().requires_grad_(), v0.clone().requires_grad_()
            m_ref = torch_fluid(vr, m0)
            m_ref.backward(g)
            m_op = physgrad.fluid(vo, m0, steps=steps, grad_mode="adjoint", pressure_atol=atol)
            m_op.backward(g)
            agreement[f"fluid/{g_name}/B{batch}"] = {
                "what": f"marker m_t and adjoint dL/dv0 vs the torch MacCormack + plain-CG reference "
                        f"(pressure atol {atol:g}; op: PETSc CG, default preconditioner)",
                "relative_difference": _rel(m_op.detach(), m_ref.detach()),
                "gradient_relative_difference": _rel(vo.grad, vr.grad),
                "threshold": max(10.0 * atol, 1e-9)}
    return cases


def sine_cases(cfg: Config, agreement: Optional[Dict]) -> List[Case]:
    cases = []
    for batch in cfg.sine_batches:
        paper = batch == max(cfg.sine_batches)
        gen = torch.Generator().manual_seed(3)
        a = 0.1 + 10.0 * torch.rand(batch, generator=gen, dtype=torch.float64)
        x = 0.5 + 1.5 * torch.rand(batch, generator=gen, dtype=torch.float64)
        g = physgrad.sine(x, a) + 1.0  # the experiment's loss: target -1
        base = f"sine/scalar/B{batch}"
        op = lambda mode, a=a: (lambda v: physgrad.sine(v, a, grad_mode=mode))  # noqa: E731
        cases.append(Case(f"{base}/physgrad/forward", "sine", "scalar", batch, "physgrad", "forward", "",
                          lambda op=op, x=x: ForwardRunner(op("physical"), x), sweep=paper))
        for mode in ("adjoint", "physical", "newton", "inverse_gradient"):
            cases.append(Case(f"{base}/physgrad/train:{mode}", "sine", "scalar", batch, "physgrad", "train", mode,
                              lambda op=op, mode=mode, x=x, g=g: TrainRunner(op(mode), x, g),
                              sweep=paper and mode in ("adjoint", "physical")))
        ref = lambda v, a=a: references.sine(v, a)  # noqa: E731
        cases.append(Case(f"{base}/torch/forward", "sine", "scalar", batch, "torch", "forward", "",
                          lambda ref=ref, x=x: ForwardRunner(ref, x)))
        cases.append(Case(f"{base}/torch/train:autograd", "sine", "scalar", batch, "torch", "train", "autograd",
                          lambda ref=ref, x=x, g=g: TrainRunner(ref, x, g)))
        if agreement is not None and paper:
            agreement[f"sine/B{batch}"] = {"what": "sin(a/x) vs torch.sin", "threshold": 1e-12,
                                          "relative_difference": _rel(physgrad.sine(x, a), references.sine(x, a))}
    return cases


def wave_cases(cfg: Config, agreement: Optional[Dict]) -> List[Case]:
    cases = []
    for batch in cfg.wave_batches:
        paper = batch == max(cfg.wave_batches)
        gen = torch.Generator().manual_seed(4)
        truth = torch.stack([25.6 + 204.8 * torch.rand(batch, generator=gen, dtype=torch.float64),
                             1.0 + 3.0 * torch.rand(batch, generator=gen, dtype=torch.float64)], dim=1)
        x = truth + torch.tensor([5.0, 0.3], dtype=torch.float64) * torch.randn(batch, 2, generator=gen,
                                                                                 dtype=torch.float64)
        g = physgrad.wave_packet(x) - physgrad.wave_packet(truth)
        base = f"wave_packet/256/B{batch}"
        op = lambda mode: (lambda v: physgrad.wave_packet(v, grad_mode=mode))  # noqa: E731
        cases.append(Case(f"{base}/physgrad/forward", "wave_packet", "256", batch, "physgrad", "forward", "",
                          lambda x=x: ForwardRunner(op("physical"), x), sweep=paper))
        for mode in ("adjoint", "newton", "physical", "lbfgs"):
            cases.append(Case(f"{base}/physgrad/train:{mode}", "wave_packet", "256", batch, "physgrad", "train",
                              mode, lambda mode=mode, x=x, g=g: TrainRunner(op(mode), x, g),
                              sweep=paper and mode in ("adjoint", "physical")))
        cases.append(Case(f"{base}/torch/forward", "wave_packet", "256", batch, "torch", "forward", "",
                          lambda x=x: ForwardRunner(references.wave_packet, x)))
        cases.append(Case(f"{base}/torch/train:autograd", "wave_packet", "256", batch, "torch", "train", "autograd",
                          lambda x=x, g=g: TrainRunner(references.wave_packet, x, g)))
        if agreement is not None and paper:
            agreement[f"wave_packet/B{batch}"] = {
                "what": "A sin(f xi) exp(-(xi - xi0)^2 / (2 sigma^2)) vs torch", "threshold": 1e-12,
                "relative_difference": _rel(physgrad.wave_packet(x), references.wave_packet(x))}
    return cases


def training_cases(cfg: Config) -> List[Case]:
    cases = []
    available = experiments.available_experiments()
    for name, options, batch in cfg.training:
        if name not in available:
            continue
        def build(name=name, options=options, batch=batch):
            return StepPairRunner(experiments.get_experiment(name, **options), batch)

        grid = "x".join(str(v) for v in options.get("shape", ())[::-1]) or "-"
        cases.append(Case(f"step/{name}/B{batch}", name, grid, batch, "step", "step", "adam, adam+pg", build))
    return cases


def all_cases(cfg: Config, agreement: Optional[Dict]) -> List[Case]:
    """Every case; with ``agreement`` (a dict), also the references' agreement with the ops."""
    cases = (poisson_cases(cfg, agreement) + heat_cases(cfg, agreement) + fluid_cases(cfg, agreement)
             + sine_cases(cfg, agreement) + wave_cases(cfg, agreement) + training_cases(cfg))
    unique: Dict[str, Case] = {}
    for case in cases:  # a capped lbfgs batch can coincide with batch 1
        unique.setdefault(case.id, case)
    return list(unique.values())


# ------------------------------------------------------------------ measuring
def measure(runner: Runner, cfg: Config, repeats: Optional[int] = None, budget_s: Optional[float] = None) -> Dict:
    """Medians (ms) of the runner's timings; keys ``ratio/...`` are dimensionless
    per-repetition ratios, kept as median, quartiles and extremes."""
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


def run_case(case: Case, cfg: Config, threads: int) -> Dict:
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
    command = [sys.executable, os.path.abspath(__file__), "--memory-case", case_id] + (["--quick"] if quick else [])
    command += ["--memory-part", part] if part else []
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        print(f"  memory of {case_id} failed: {done.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ extra sections
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
                    return {"forward": timings["forward"], "iterations": max(physgrad.solve_stats("poisson").iterations),
                            "true_relative_residual": _rel(-laplace(y), x)}

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
            row["difference_to_icc"] = _rel(m, reference)
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


# ------------------------------------------------------------------ main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats (smoke run)")
    parser.add_argument("--only", default="", help="regular expression: run only matching case ids")
    parser.add_argument("--memory", choices=("all", "some", "none"), default=None,
                        help="peak-memory subprocesses: all cases, a few (default with --quick), or none")
    parser.add_argument("--no-threads", action="store_true", help="skip the 1- vs 2-thread sweep")
    parser.add_argument("--no-extras", action="store_true", help="skip the FFTW floor and the preconditioners")
    parser.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    parser.add_argument("--memory-part", help=argparse.SUPPRESS)
    parser.add_argument("--memory-into", metavar="JSON",
                        help="only measure the peak memory of the cases of an earlier report (its config: pass "
                             "--quick for a quick one) and rewrite it and its Markdown")
    args = parser.parse_args(argv)
    cfg = make_config(args.quick)
    agreement: Dict = {}

    if args.memory_case:
        cases = {c.id: c for c in all_cases(cfg, None)}
        print(json.dumps(memory_of_case(cases[args.memory_case], args.memory_part)))
        return 0

    if args.memory_into:
        with open(args.memory_into) as f:
            report = json.load(f)
        by_id = {c.id: c for c in all_cases(cfg, None)}
        for result in report["results"]:
            if result["id"] in by_id and (not args.only or re.search(args.only, result["id"])):
                result["memory"] = memory_in_subprocess(by_id[result["id"]], args.quick)
                print(f"memory {result['id']}: {result['memory']}", flush=True)
        report["memory_measured"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        with open(args.memory_into, "w") as f:
            json.dump(report, f, indent=1, default=str)
        with open(os.path.splitext(args.memory_into)[0] + ".md", "w") as f:
            f.write(bench_report.markdown(report))
        return 0

    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()
    cases = [c for c in all_cases(cfg, agreement) if not args.only or re.search(args.only, c.id)]
    for key, row in agreement.items():
        ok = row["relative_difference"] <= row["threshold"] and row.get("gradient_relative_difference", 0.0) <= \
            10 * row["threshold"]
        row["ok"] = bool(ok)
        print(f"agreement {key}: relative difference {row['relative_difference']:.2e}"
              + (f", gradient {row['gradient_relative_difference']:.2e}" if "gradient_relative_difference" in row
                 else "") + f" (threshold {row['threshold']:.0e}) {'ok' if ok else 'NOT OK'}", flush=True)

    results = []
    for case in cases:
        result = run_case(case, cfg, threads=1)
        results.append(result)
        print(bench_report.one_line(result), flush=True)
    sweep = []
    if not args.no_threads:
        for case in (c for c in cases if c.sweep and (c.impl == "physgrad" or not args.quick)):
            for threads in cfg.threads:
                sweep.append(run_case(case, cfg, threads))
                print("threads", bench_report.one_line(sweep[-1]), flush=True)
    extras = {}
    if not args.no_extras and not args.only:
        extras["fftw_floor"] = run_fftw_floor(args.build_dir, cfg, args.quick)
        extras["preconditioners"] = run_preconditioners(cfg)
    memory_mode = args.memory or ("some" if args.quick else "all")
    if memory_mode != "none":
        chosen = cases if memory_mode == "all" else [c for c in cases if c.impl == "physgrad"][:1]
        by_id = {r["id"]: r for r in results}
        for case in chosen:
            by_id[case.id]["memory"] = memory_in_subprocess(case, args.quick)
            print(f"memory {case.id}: {by_id[case.id]['memory']}", flush=True)

    report = {"started": started.isoformat(timespec="seconds"),
              "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + (argv if argv is not None else sys.argv[1:])),
              "quick": args.quick, "machine": machine_info(),
              "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
              "config": dataclasses.asdict(cfg), "agreement": agreement, "results": results, "threads": sweep,
              **extras}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_ops.json"), "w") as f:
        json.dump(report, f, indent=1, default=str)
    with open(os.path.join(args.out, "bench_ops.md"), "w") as f:
        f.write(bench_report.markdown(report))
    print(f"wrote {os.path.join(args.out, 'bench_ops.json')} and bench_ops.md")
    return 0 if all(row["ok"] for row in agreement.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
