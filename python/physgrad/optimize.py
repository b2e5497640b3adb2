"""Single-example optimization (paper Fig. 4b, 5b, 6b) and the network against the
per-example solver (paper Table 1).

Each example's inverse problem ``find x with P(x) = y*`` is solved on its own,
from ``x_0 = 0``, by three iterations:

=========  =================================================================
``gd``     gradient descent ``x <- x - eta * dL/dx``, ``dL/dx = J(x)^T (dL/dy)``
           from the op's ``adjoint`` mode; ``L`` the experiment's objective
``lbfgs``  ``scipy.optimize.minimize(method="L-BFGS-B", jac=True)`` on the
           flattened float64 ``x`` with the same ``L`` and adjoint gradient
``pg``     the inverse-physics iteration ``x <- x - PG``: with
           ``L = 1/2 ||P(x) - y*||^2`` (``physgrad.losses.l2``) and
           ``y_step = 1`` the op's ``physical`` backward returns
           ``PG = x - P^-1(y* | x)``, so the step lands on the inverse's answer
=========  =================================================================

Step sizes (``STEP_SIZES``), from the paper and the authors' code (SIP):

* poisson, gd ``eta = 2e-5``: B.3, "GD requires eta <= 2 * 10^-5". On a
  ``64 x 64`` grid of unit spacing GD on ``1/2 ||L^-1 x - y*||^2`` is stable for
  ``eta < 2 / lambda_max(L^-2) = 4.4e-5`` (``lambda_min(-L) = 8 sin^2(pi / 130)``).
* heat, gd ``eta = 1``: SIP ``heat/plot_heat_optim.py`` (``x_gd -= 1. * grad`` on
  PhiFlow's ``l2_loss``, one half of the sum of squares, as here). The
  diffusion's eigenvalues are in ``(0, 1]``, so any ``eta < 2`` is stable.
* fluid, gd ``eta = 1``: paper Fig. 6b ("Optimization curves with eta = 1") and
  section 3.4 ("With eta = 1, it takes more than 20K iterations for GD to
  converge"), on the paper's frequency-weighted objective (the experiment's
  adjoint training objective).
* pg: the full step (``eta = 1``, the paper's Eq. 5 and SIP's ``x_pg += dx``).
* lbfgs: no step size; ``ftol = gtol = 0`` so that it runs the requested
  iterations (SIP's heat script asks L-BFGS-B for relative tolerance 0 and
  absolute 1e-14). It stops early only when its line search fails (the loss is
  at rounding level); its curve then stays at the last iterate.

Default iterations and examples follow the figures: 100 iterations
(Fig. 5b and Fig. 12: "100 iterations each, starting with x_0 = 0"), one
example for Poisson (Fig. 4b) and heat (Fig. 5b), four for the fluid (Fig. 6b,
whose GD runs to 20k iterations: ``iterations=20000``). Table 1 used 64.

Measured per iteration, averaged over the examples: the loss (the experiment's
``y_loss`` per example), the x error (the experiment's ``x_metric`` per
example) and the wall time per example (batched ``gd`` and ``pg`` divide the
batch's time by the number of examples, as the paper does; ``lbfgs`` runs each
example alone). Logging is not timed.

Heat's ``pg`` runs with the op's absolute noise floor ``noise_floor = 1e-8``
(``PG_OPTIONS``), as the authors' single-example script does
(``uncertainty = |dy| * 1e-6 + 1e-8``): without it the stable inverse judges
noise relative to the step's own norm only, so once the residual is at rounding
level it is taken for signal and amplified in frequencies the diffusion erases
(the x error grows after about two iterations while the loss stays at rounding
level). Training keeps the op's default (no floor), as the authors' training code.
"""
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .experiments import Experiment
from .optimize_report import format_table, iterations_to_reach, plot_curves, training_record, write_curve_csv

__all__ = ["METHODS", "EXPERIMENTS", "STEP_SIZES", "DEFAULT_SEED", "Curve", "sample_examples",
           "run_first_order", "run_gd", "run_pg", "run_lbfgs", "experiment_for", "load_network",
           "network_prediction",
           "iterations_to_reach", "write_curve_csv", "plot_curves", "format_table", "optimize"]

METHODS = ("gd", "lbfgs", "pg")
EXPERIMENTS = ("poisson", "heat", "fluid")
#: experiment -> (gradient descent step size eta, where the value comes from)
STEP_SIZES: Dict[str, Tuple[float, str]] = {
    "poisson": (2e-5, "paper B.3: 'GD requires eta <= 2*10^-5'"),
    "heat": (1.0, "SIP heat/plot_heat_optim.py: x_gd -= 1. * grad"),
    "fluid": (1.0, "paper Fig. 6b and section 3.4: GD with eta = 1"),
}
#: experiment -> (options of the experiment for ``pg`` only, where they come from)
PG_OPTIONS: Dict[str, Tuple[Dict[str, Any], str]] = {
    "heat": ({"noise_floor": 1e-8},
             "SIP heat/plot_heat_optim.py: the stable inverse's uncertainty |dy| * 1e-6 + 1e-8"),
}
DEFAULT_ITERATIONS = {"poisson": 100, "heat": 100, "fluid": 100}
DEFAULT_EXAMPLES = {"poisson": 1, "heat": 1, "fluid": 4}
#: data seed of the examples: none of the training runs' default seeds (0, 1, ...)
DEFAULT_SEED = 12345


@dataclass
class Curve:
    """One method's run on the examples. Lists are per iteration ``0 .. n``
    (iteration 0 is ``x_0``), each the mean over the examples: ``evaluations``
    physics passes (forward and backward) per example so far, ``wall_seconds``
    time per example so far, ``loss`` the experiment's ``y_loss`` per example,
    ``x_error`` its ``x_metric``. ``final_loss`` / ``final_x_error``: per example
    at the last iteration; ``x`` the last iterate ``[examples, ...]``. ``message``: why
    the run stopped early, else ``""``."""
    method: str
    iteration: List[int] = field(default_factory=list)
    evaluations: List[float] = field(default_factory=list)
    wall_seconds: List[float] = field(default_factory=list)
    loss: List[float] = field(default_factory=list)
    x_error: List[float] = field(default_factory=list)
    final_loss: List[float] = field(default_factory=list)
    final_x_error: List[float] = field(default_factory=list)
    x: Optional[torch.Tensor] = field(default=None, repr=False)
    message: str = ""


def sample_examples(experiment: Experiment, count: int, seed: int) -> Any:
    """``count`` examples, ``experiment.make_data(seed).sample(count)``, in float64 with
    ``y* = P(x*)`` simulated again in float64: the data sources return float32, and
    the rounding of a float32 ``y*`` moves the exact solution of an ill-conditioned
    problem (heat) far from ``x*``."""
    batch = experiment.make_data(seed).sample(count)
    batch = type(batch)(*(t.to(torch.float64) for t in batch))
    with torch.no_grad():
        y_star = experiment.simulate(batch.x_star, batch, None)
    return batch._replace(y_star=y_star)


def _example(batch: Any, index: int) -> Any:
    return type(batch)(*(t[index:index + 1] for t in batch))


def _per_example(function: Callable[[torch.Tensor, Any], torch.Tensor], values: torch.Tensor,
                 batch: Any) -> List[float]:
    """``[function(values[i], example i) for each example]`` (a metric or loss per example)."""
    with torch.no_grad():
        return [float(function(values[i:i + 1], _example(batch, i))) for i in range(values.shape[0])]


def _objective(experiment: Experiment, y: torch.Tensor, batch: Any, grad_mode: str) -> torch.Tensor:
    """The loss ``gd``/``lbfgs`` minimize (``adjoint``): the experiment's training
    objective; for ``pg`` (``physical``) always ``physgrad.losses.l2``, whose
    gradient ``y - y*`` makes the inverse's target ``y*``."""
    from . import losses
    if grad_mode != "adjoint":
        return losses.l2(y, batch.y_star)
    return experiment.training_loss(y, batch, grad_mode)


def _log(curve: Curve, experiment: Experiment, batch: Any, x: torch.Tensor, y: torch.Tensor,
         evaluations: float, seconds: float) -> bool:
    """Appends iteration ``len(curve.iteration)``; False when a value is not finite."""
    losses = _per_example(experiment.y_loss, y, batch)
    errors = _per_example(experiment.x_metric, x, batch)
    curve.iteration.append(len(curve.iteration))
    curve.evaluations.append(evaluations)
    curve.wall_seconds.append(seconds)
    curve.loss.append(sum(losses) / len(losses))
    curve.x_error.append(sum(errors) / len(errors))
    curve.final_loss, curve.final_x_error, curve.x = losses, errors, x.detach()
    return all(math.isfinite(v) for v in losses + errors)


def run_first_order(experiment: Experiment, batch: Any, iterations: int, grad_mode: str,
                    step: float, method: str) -> Curve:
    """``x_{k+1} = x_k - step * g(x_k)``, ``g`` the backward of ``grad_mode`` through the
    objective (:func:`_objective`), all examples in one batch, ``k < iterations``.
    A solver error or a non-finite value after the start stops the run (``Curve.message``)."""
    curve = Curve(method)
    count = batch.x_star.shape[0]
    x = torch.zeros_like(batch.x_star)
    elapsed = 0.0
    for k in range(iterations + 1):
        start = time.perf_counter()
        x_variable = x.detach().requires_grad_(True)
        try:
            y = experiment.simulate(x_variable, batch, grad_mode)
            loss = _objective(experiment, y, batch, grad_mode)
        except (RuntimeError, ValueError) as error:
            if k == 0:
                raise RuntimeError(f"{method}: the simulation of x_0 = 0 failed: {error}") from error
            curve.message = f"iteration {k}: {error}"
            break
        forward = time.perf_counter() - start
        if not _log(curve, experiment, batch, x, y.detach(), float(k), elapsed / count):
            curve.message = f"iteration {k}: the loss or x error is not finite"
            break
        if k == iterations:
            break
        start = time.perf_counter()
        try:
            loss.backward()
        except (RuntimeError, ValueError) as error:
            curve.message = f"iteration {k}: {error}"
            break
        x = x - step * x_variable.grad
        elapsed += forward + time.perf_counter() - start
    return curve


def run_gd(experiment: Experiment, batch: Any, iterations: int, step: float) -> Curve:
    """Gradient descent with step ``step`` (see ``STEP_SIZES``)."""
    return run_first_order(experiment, batch, iterations, "adjoint", step, "gd")


def run_pg(experiment: Experiment, batch: Any, iterations: int) -> Curve:
    """The inverse-physics iteration ``x <- x - PG = P^-1(y* | x)``."""
    return run_first_order(experiment, batch, iterations, "physical", 1.0, "pg")


def _lbfgs_one(experiment: Experiment, example: Any, iterations: int) -> Curve:
    """L-BFGS-B on one example; the curve of that example alone."""
    import numpy
    import scipy.optimize

    curve = Curve("lbfgs")
    shape = example.x_star.shape
    last: Dict[str, Any] = {"x": None, "y": None, "evaluations": 0}
    clock = {"spent": 0.0, "since": 0.0}  # optimizer time so far; logging is not counted

    def loss_and_gradient(flat: "numpy.ndarray") -> Tuple[float, "numpy.ndarray"]:
        x = torch.from_numpy(flat.copy()).view(shape).requires_grad_(True)
        y = experiment.simulate(x, example, "adjoint")
        loss = _objective(experiment, y, example, "adjoint")
        loss.backward()
        last.update(x=flat.copy(), y=y.detach(), evaluations=last["evaluations"] + 1)
        return float(loss), x.grad.numpy().astype(numpy.float64).ravel()

    def log(flat: "numpy.ndarray") -> None:
        x = torch.from_numpy(flat.copy()).view(shape)
        if last["x"] is None or not numpy.array_equal(last["x"], flat):
            with torch.no_grad():
                last.update(x=flat.copy(), y=experiment.simulate(x, example, "adjoint"))
        _log(curve, experiment, example, x, last["y"], float(last["evaluations"]), clock["spent"])

    def callback(flat: "numpy.ndarray") -> None:
        clock["spent"] += time.perf_counter() - clock["since"]
        log(flat)
        clock["since"] = time.perf_counter()

    x0 = numpy.zeros(example.x_star.numel())
    log(x0)
    clock["since"] = time.perf_counter()
    try:
        result = scipy.optimize.minimize(loss_and_gradient, x0, jac=True, method="L-BFGS-B", callback=callback,
                                         options={"maxiter": iterations, "maxfun": max(15000, 50 * iterations),
                                                  "ftol": 0.0, "gtol": 0.0})
        if len(curve.iteration) <= iterations:
            curve.message = str(result.message)
    except (RuntimeError, ValueError) as error:
        curve.message = f"iteration {len(curve.iteration)}: {error}"
    return curve


def run_lbfgs(experiment: Experiment, batch: Any, iterations: int) -> Curve:
    """L-BFGS-B per example (:func:`_lbfgs_one`), curves averaged; a run that stopped
    early keeps its last iterate (and time) for the remaining iterations."""
    runs = [_lbfgs_one(experiment, _example(batch, i), iterations) for i in range(batch.x_star.shape[0])]
    length = max(len(run.iteration) for run in runs)
    curve = Curve("lbfgs", iteration=list(range(length)))
    for name in ("evaluations", "wall_seconds", "loss", "x_error"):
        padded = [getattr(run, name) + getattr(run, name)[-1:] * (length - len(run.iteration)) for run in runs]
        setattr(curve, name, [sum(values) / len(runs) for values in zip(*padded)])
    curve.final_loss = [run.final_loss[0] for run in runs]
    curve.final_x_error = [run.final_x_error[0] for run in runs]
    curve.x = torch.cat([run.x for run in runs])
    stopped = [run for run in runs if run.message]
    if stopped:
        reasons = sorted({run.message for run in stopped})
        counts = ", ".join(f"{reason} ({sum(run.message == reason for run in stopped)})" for reason in reasons)
        ran = [run.iteration[-1] for run in stopped]
        curve.message = (f"{len(stopped)} of {len(runs)} examples stopped after {min(ran)} to {max(ran)} "
                         f"iterations: {counts}")
    return curve


def experiment_for(name: str, shape: Optional[Sequence[int]] = None,
                   network_path: Optional[str] = None) -> Experiment:
    """The experiment ``name`` with the options of the run that trained ``network_path``
    (from its checkpoint ``<dir>/<method>.ckpt``, when there is one) and ``shape``."""
    from .experiments import get_experiment
    from .training import CHECKPOINT_SUFFIX, load_checkpoint
    options: Dict[str, Any] = {}
    if network_path is not None:
        checkpoint = os.path.splitext(network_path)[0] + CHECKPOINT_SUFFIX
        if os.path.isfile(checkpoint):
            config = load_checkpoint(checkpoint)["config"]
            if config["experiment"] != get_experiment(name).name:
                raise ValueError(f"--network {network_path} was trained on experiment "
                                 f"{config['experiment']!r}, not {name!r}")
            options = dict(config["options"])
    if shape is not None:
        if "shape" in options and list(options["shape"]) != list(shape):
            raise ValueError(f"--shape {shape[0]}x{shape[1]} differs from the --network run's "
                             f"{'x'.join(map(str, options['shape']))}")
        options["shape"] = tuple(shape)
    return get_experiment(name, **options)


def load_network(experiment: Experiment, path: str) -> nn.Module:
    """The experiment's network with the weights ``path`` (a ``<method>.pt`` of ``train``)."""
    from .training import make_network
    if not os.path.isfile(path):
        raise ValueError(f"--network {path}: no such file")
    network = make_network(experiment, 0)
    try:
        network.load_state_dict(torch.load(path, map_location="cpu"))
    except (RuntimeError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"--network {path}: not weights of the {experiment.name} network ({error})") from error
    return network.eval()


def network_prediction(experiment: Experiment, network: nn.Module, batch: Any,
                       repeats: int = 3) -> Dict[str, Any]:
    """The network's ``x`` for the examples (eval mode, float32 as trained): x error and
    loss per example, and the inference wall time per example (best of ``repeats``)."""
    inputs = type(batch)(*(t.to(torch.float32) for t in batch))
    seconds = math.inf
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            x = experiment.predict(network, inputs)
            seconds = min(seconds, time.perf_counter() - start)
        x = x.to(torch.float64)
        y = experiment.simulate(x, batch, None)
    errors, losses = _per_example(experiment.x_metric, x, batch), _per_example(experiment.y_loss, y, batch)
    return {"x_error": sum(errors) / len(errors), "loss": sum(losses) / len(losses),
            "seconds_per_example": seconds / len(errors), "x_error_per_example": errors}


def optimize(experiment: Experiment, methods: Sequence[str] = METHODS, iterations: Optional[int] = None,
             examples: Optional[int] = None, seed: int = DEFAULT_SEED, out_dir: Optional[str] = None,
             network_path: Optional[str] = None, gd_step: Optional[float] = None,
             report: Callable[[str], None] = lambda line: None) -> Dict[str, Any]:
    """Runs ``methods`` on ``examples`` examples of data seed ``seed`` for ``iterations``
    iterations each, and, with ``network_path``, the network on the same examples.
    Writes ``<method>.csv``, ``optimize.png``, ``table.md`` and ``results.json`` to
    ``out_dir`` (default ``runs/<experiment>/optimize``). Returns the results.

    Raises:
        ValueError: an experiment without single-example optimization, an unknown
            method, ``iterations`` or ``examples`` below 1, ``gd_step <= 0``, or
            unusable ``network_path`` (messages name the argument).
    """
    name = experiment.name
    if name not in EXPERIMENTS:
        raise ValueError(f"optimize: experiment {name!r} has no single-example optimization; "
                         f"choose one of: {', '.join(EXPERIMENTS)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}"
                         if unknown else f"--methods: give at least one of {', '.join(METHODS)}")
    iterations = DEFAULT_ITERATIONS[name] if iterations is None else iterations
    examples = DEFAULT_EXAMPLES[name] if examples is None else examples
    if iterations < 1:
        raise ValueError(f"--iterations must be at least 1, got {iterations}")
    if examples < 1:
        raise ValueError(f"--examples must be at least 1, got {examples}")
    step, step_source = STEP_SIZES[name] if gd_step is None else (gd_step, "--lr")
    if not step > 0:
        raise ValueError(f"--lr (the gd step size) must be positive, got {step}")
    network = load_network(experiment, network_path) if network_path is not None else None
    out_dir = out_dir or os.path.join("runs", name, "optimize")
    os.makedirs(out_dir, exist_ok=True)

    batch = sample_examples(experiment, examples, seed)
    pg_options, pg_source = PG_OPTIONS.get(name, ({}, ""))
    pg_experiment = (type(experiment)(**{**experiment.options(), **pg_options}) if pg_options
                     else experiment)
    runners = {"gd": lambda: run_gd(experiment, batch, iterations, step),
               "lbfgs": lambda: run_lbfgs(experiment, batch, iterations),
               "pg": lambda: run_pg(pg_experiment, batch, iterations)}
    curves, results = [], {"experiment": name, "options": experiment.options(), "examples": examples,
                           "seed": seed, "iterations": iterations, "metric": experiment.metric_name,
                           "step_sizes": {"gd": {"eta": step, "source": step_source},
                                          "pg": {"eta": 1.0, "source": "the full inverse step (paper Eq. 5)",
                                                 "options": pg_options, "options_source": pg_source}},
                           "methods": {}}
    for method in methods:
        curve = runners[method]()
        curves.append(curve)
        csv_path = write_curve_csv(curve, os.path.join(out_dir, f"{method}.csv"))
        results["methods"][method] = {"iterations": curve.iteration[-1], "wall_seconds": curve.wall_seconds[-1],
                                      "loss": curve.loss[-1], "x_error": curve.x_error[-1],
                                      "loss_per_example": curve.final_loss,
                                      "x_error_per_example": curve.final_x_error,
                                      "message": curve.message, "csv": csv_path}
        report(f"{name} {method}: {curve.iteration[-1]} iterations, {curve.wall_seconds[-1]:.4g} s per example; "
               f"loss {curve.loss[-1]:.4g}, {experiment.metric_name} {curve.x_error[-1]:.4g}"
               + (f" ({curve.message})" if curve.message else ""))
    prediction = None
    if network is not None:
        prediction = network_prediction(experiment, network, batch)
        prediction.update(name=os.path.basename(network_path), path=network_path,
                          training=training_record(network_path))
        prediction["reach"] = {}
        for curve in curves:
            reached = iterations_to_reach(curve, prediction["x_error"])
            prediction["reach"][curve.method] = (None if reached is None else
                                                 {"iterations": reached[0], "wall_seconds": reached[1]})
        results["network"] = prediction
    results["table"] = format_table(experiment, curves, examples, prediction)
    results["plot"] = plot_curves(curves, os.path.join(out_dir, "optimize.png"), experiment, examples, prediction)
    results["table_md"] = os.path.join(out_dir, "table.md")
    with open(results["table_md"], "w") as stream:
        stream.write(results["table"])
    results["results_json"] = os.path.join(out_dir, "results.json")
    with open(results["results_json"], "w") as stream:
        json.dump(_finite(results), stream, indent=2)
    return results


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats as None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
