"""The cases of benchmarks/bench_ops.py: sizes (:class:`Config`, the paper's or
``--quick``'s), the inputs of each op, and per op its forward and per-mode
training cases with the plain-PyTorch references (``references.py``) and their
agreement with the op; plus one training step per experiment. How cases are
timed: bench_timing.py.
"""
import dataclasses
from typing import Dict, List, Optional, Tuple

import torch

import physgrad
import references
from bench_timing import Case, FloorPairRunner, ForwardRunner, StepPairRunner, TrainRunner
from physgrad import data as physgrad_data
from physgrad import experiments


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


def grid_name(shape) -> str:
    return f"{shape[1]}x{shape[0]}"  # x by y, as the paper writes 80x60


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
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
                    "relative_difference": rel_diff(y, y_ref), "threshold": 1e-6,
                    "op_residual": rel_diff(laplace(y), x), "torch_residual": rel_diff(laplace(y_ref), x),
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
                "relative_difference": max(rel_diff(physgrad.heat(x), ref(x)), rel_diff(xo.grad, xr.grad)),
                "threshold": 1e-12}
    return cases


def fluid_inputs(shape, steps, batch, atol, seed=0):
    data = physgrad_data.FluidData(shape=shape, spacing=(2.0, 2.0), seed=seed, steps=steps,
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
                "relative_difference": rel_diff(m_op.detach(), m_ref.detach()),
                "gradient_relative_difference": rel_diff(vo.grad, vr.grad),
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
            agreement[f"sine/B{batch}"] = {
                "what": "sin(a/x) vs torch.sin", "threshold": 1e-12,
                "relative_difference": rel_diff(physgrad.sine(x, a), references.sine(x, a))}
    return cases


def wave_cases(cfg: Config, agreement: Optional[Dict]) -> List[Case]:
    cases = []
    for batch in cfg.wave_batches:
        paper = batch == max(cfg.wave_batches)
        gen = torch.Generator().manual_seed(4)
        truth = torch.stack([25.6 + 204.8 * torch.rand(batch, generator=gen, dtype=torch.float64),
                             1.0 + 3.0 * torch.rand(batch, generator=gen, dtype=torch.float64)], dim=1)
        x = truth + torch.tensor([5.0, 0.3], dtype=torch.float64) * torch.randn(
            batch, 2, generator=gen, dtype=torch.float64)
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
                "relative_difference": rel_diff(physgrad.wave_packet(x), references.wave_packet(x))}
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
