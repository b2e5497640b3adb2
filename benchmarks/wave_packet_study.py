#!/usr/bin/env python3
"""When does the adam-trained wave-packet network beat the per-example fitter?

The paper (appendix B.1, figure 8) says the network outperforms L-BFGS-B "after
30 to 40 training iterations". This study trains physgrad's wave-packet network
(:mod:`physgrad.experiments.wave_packet`) with Adam through the adjoint under a
set of *variants*, each changing one setting the paper leaves open, and
measures, for every run, the first iteration at which the network beats the
unbounded fitter (:func:`physgrad.wave_packet_fit` with ``bounded=False``,
start (128, 2): the paper's baseline) by several definitions of "beats":

``train_y`` / ``train_xi0``
    the 10-iteration trailing mean of the training y-loss
    ``0.5 ||P(x) - y*||^2`` (against the noisy series, per example) / of the
    training xi0 MAE at or below the fitter's value on the test set: what
    :func:`physgrad.experiments.wave_packet.evaluate_against_fitter` reports
    (``beats_fit_y_loss_at`` / ``beats_fit_xi0_at``; recomputed here and
    checked against it).
``train_y_clean``
    as ``train_y`` with the objective against the clean packet
    ``0.5 ||P(x) - P(x*)||^2`` for network and fitter (the noise floor removed).
``train_xi0_c64``
    the training xi0 MAE smoothed as PhiFlow's ``smooth_uniform_curve(n=64)``
    plots it (the authors' plotting helper: a centred 64-iteration mean, so a
    crossing read off such a plot shows ~27 iterations earlier than a trailing
    10-mean), against the fitter's.
``test_y`` / ``test_xi0`` / ``test_y_clean``
    the network evaluated on the fitter's test set every ``--eval-every``
    iterations (after that many updates): the first evaluation at or below
    the fitter.

Variants (one change each from ``paper``, physgrad's defaults):

=================  ============================================================
``paper``          PyTorch default init, xi0 = 25.6 + 204.8 sigmoid(raw),
                   A = raw + 2, noise N(0, 1), loss summed over the batch
``init-glorot``    Glorot-uniform weights, zero biases (TensorFlow/Keras default)
``init-he``        He-normal (fan-in, ReLU gain) weights, zero biases
``init-zero-bias`` PyTorch default weights, zero biases (a diagnostic: which of
                   Glorot's two changes matters)
``xi0-linear``     xi0 = 128 + raw (the offset read as for A, no sigmoid)
``A-no-offset``    A = raw (no +2 offset)
``noise-0.1``      noise std 0.1 (the garbled glyph of B.1 read as a small value)
``mean-batch``     loss averaged over the batch (PhiFlow ``l2_loss(...).mean``)
``mean-all``       loss averaged over batch and samples (``torch.nn.MSELoss``)
=================  ============================================================

The training loop is physgrad's (:func:`physgrad.training.train`) written out
with hooks: ``--check-loop`` (and the test) confirms that the ``paper``
variant's curve equals ``train("wave-packet", "adam")`` bitwise.

Output: ``<out>/wave_packet_study.json`` (settings, machine, fitter rows,
per-run crossings and curves sampled every 10 iterations) and
``<out>/wave_packet_study.md`` (the tables). ``--quick``: 2 variants x 5
iterations on a 100-example test set (a smoke test).

    cd /work/main && PYTHONPATH=python python3 benchmarks/wave_packet_study.py \
        --out results/wave-packet-study
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

import physgrad
from physgrad.experiments import wave_packet as wp
from physgrad.history import History
from physgrad.training import make_network

#: variant name -> (settings changed from the paper defaults, description)
DEFAULTS = {"init": "pytorch", "xi0_head": "sigmoid", "amplitude_offset": wp.INITIAL_GUESS[1],
            "noise_std": 1.0, "reduction": "sum"}
VARIANTS: Dict[str, Dict[str, Any]] = {
    "paper": {"changes": {}, "description": "physgrad defaults (PyTorch init, sigmoid xi0, A = raw + 2, "
                                            "N(0, 1), summed loss)"},
    "init-glorot": {"changes": {"init": "glorot"},
                    "description": "Glorot-uniform weights, zero biases (TensorFlow/Keras default)"},
    "init-he": {"changes": {"init": "he"}, "description": "He-normal weights (fan-in), zero biases"},
    "init-zero-bias": {"changes": {"init": "zero-bias"},
                       "description": "PyTorch default weights, zero biases (splits init-glorot's two changes)"},
    "xi0-linear": {"changes": {"xi0_head": "linear"}, "description": "xi0 = 128 + raw (no sigmoid)"},
    "A-no-offset": {"changes": {"amplitude_offset": 0.0}, "description": "A = raw (no +2 offset)"},
    "noise-0.1": {"changes": {"noise_std": 0.1}, "description": "noise std 0.1 instead of 1"},
    "mean-batch": {"changes": {"reduction": "mean-batch"}, "description": "loss averaged over the batch"},
    "mean-all": {"changes": {"reduction": "mean-all"},
                 "description": "loss averaged over batch and samples (MSE)"},
}
QUICK_VARIANTS = ("paper", "init-glorot")
#: crossing definitions, in table order: (key, label)
MEASURES = (("train_y", "train y"), ("train_xi0", "train xi0"), ("train_y_clean", "train y clean"),
            ("train_xi0_c64", "train xi0 c64"), ("test_y", "test y"), ("test_xi0", "test xi0"),
            ("test_y_clean", "test y clean"))
CURVE_STEP = 10


class StudyNet(wp.WavePacketNet):
    """:class:`WavePacketNet` with a choice of xi0 head (``sigmoid``: the range-scaled
    sigmoid; ``linear``: ``128 + raw``) and of the amplitude offset."""

    def __init__(self, xi0_head: str = "sigmoid", amplitude_offset: float = wp.INITIAL_GUESS[1]):
        super().__init__(amplitude_offset=amplitude_offset)
        if xi0_head not in ("sigmoid", "linear"):
            raise ValueError(f"xi0_head: sigmoid or linear, not {xi0_head!r}")
        self.xi0_head = xi0_head

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.xi0_head == "sigmoid":
            return super().forward(y)
        raw = self.dense(self.convolutions(y.unsqueeze(1)).flatten(1))
        return torch.stack([raw[:, 0] + wp.INITIAL_GUESS[0], raw[:, 1] + self.amplitude_offset], 1)


def reinitialize(network: nn.Module, scheme: str) -> None:
    """Re-draw the weights of every Conv1d / Linear (from torch's global RNG) by
    ``scheme``: ``glorot`` (Xavier uniform) or ``he`` (Kaiming normal, fan-in,
    ReLU gain); biases zero. ``pytorch`` leaves the layers' own initialization,
    ``zero-bias`` keeps its weights and zeroes the biases."""
    if scheme == "pytorch":
        return
    for module in network.modules():
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            if scheme == "zero-bias":
                pass
            elif scheme == "glorot":
                nn.init.xavier_uniform_(module.weight)
            elif scheme == "he":
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            else:
                raise ValueError(f"init: pytorch, glorot, he or zero-bias, not {scheme!r}")
            nn.init.zeros_(module.bias)


class StudyExperiment(wp.WavePacketExperiment):
    """The wave-packet experiment with one variant's settings."""

    def __init__(self, settings: Dict[str, Any], test_size: int = 1000):
        super().__init__(noise_std=settings["noise_std"], test_size=test_size)
        self.settings = dict(settings)

    def make_network(self) -> nn.Module:
        network = StudyNet(self.settings["xi0_head"], self.settings["amplitude_offset"])
        reinitialize(network, self.settings["init"])
        return network


def first_at_or_below(iterations: Sequence[int], values: Sequence[float], level: float) -> Optional[int]:
    for iteration, value in zip(iterations, values):
        if value <= level:
            return iteration
    return None


def trailing_mean(values: Sequence[float], window: int = 10) -> List[Optional[float]]:
    out: List[Optional[float]] = []
    total = 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / window if i + 1 >= window else None)
    return out


def centred_mean(values: Sequence[float], n: int = 64) -> Dict[int, float]:
    """PhiFlow's ``smooth_uniform_curve(x, values, n)`` for x = 1, 2, ...: the mean
    of values[j .. j + n - 1] is plotted at iteration j + n // 2 (1-based)."""
    out: Dict[int, float] = {}
    total = 0.0
    for i, value in enumerate(values):
        total += value
        if i >= n:
            total -= values[i - n]
        if i + 1 >= n:
            out[i + 1 - n + n // 2] = total / n
    return out


def test_metrics(params: torch.Tensor, batch: wp.WavePacketBatch, clean: torch.Tensor) -> Dict[str, float]:
    """y-loss against the noisy and the clean series, xi0 MAE (per-example means, float64)."""
    params = params.detach().double()
    y = physgrad.wave_packet(params, samples=wp.SAMPLES, sigma=wp.SIGMA)
    return {"y": float(0.5 * (y - batch.y_star.double()).pow(2).sum(1).mean()),
            "y_clean": float(0.5 * (y - clean).pow(2).sum(1).mean()),
            "xi0": float((params[:, 0] - batch.x_star[:, 0].double()).abs().mean())}


def fitter_reference(noise_std: float, test_size: int) -> Dict[str, Any]:
    """The unbounded (paper) and bounded fitter on the test set, as evaluate_against_fitter runs them."""
    batch = wp.WavePacketData(wp.TEST_SEED, noise_std, dtype=torch.float64).sample(test_size)
    clean = physgrad.wave_packet(batch.x_star, samples=wp.SAMPLES, sigma=wp.SIGMA)
    rows = {}
    for name, bounded in (("unbounded", False), ("bounded", True)):
        start = time.perf_counter()
        fitted, converged = physgrad.wave_packet_fit(
            batch.y_star, initial=wp.INITIAL_GUESS, lower=(wp.XI0_RANGE[0], wp.AMPLITUDE_RANGE[0]),
            upper=(wp.XI0_RANGE[1], wp.AMPLITUDE_RANGE[1]), samples=wp.SAMPLES, sigma=wp.SIGMA,
            bounded=bounded)
        row = test_metrics(fitted, batch, clean)
        row.update(failed=float(((fitted[:, 0] - batch.x_star[:, 0]).abs() > wp.SIGMA).double().mean()),
                   outside_range=float(wp.outside_data_range(fitted).double().mean()),
                   converged=float(converged.double().mean()), seconds=time.perf_counter() - start)
        rows[name] = row
    guess = torch.tensor([wp.INITIAL_GUESS], dtype=torch.float64).expand(test_size, 2)
    rows["initial guess"] = test_metrics(guess, batch, clean)
    none = torch.tensor([[wp.INITIAL_GUESS[0], 0.0]], dtype=torch.float64).expand(test_size, 2)
    rows["no packet (A = 0)"] = test_metrics(none, batch, clean)
    return {"batch": batch, "clean": clean, "rows": rows}


def run_variant(name: str, seed: int, iterations: int, reference: Dict[str, Any], eval_every: int,
                test_size: int) -> Dict[str, Any]:
    """Train one variant with one seed (Adam lr 1e-3, batch 100, adjoint) and measure the crossings."""
    settings = dict(DEFAULTS, **VARIANTS[name]["changes"])
    experiment = StudyExperiment(settings, test_size)
    batch_size = experiment.default_batch_size
    network = make_network(experiment, seed)
    network.train()
    optimizer = torch.optim.Adam(network.parameters(), lr=experiment.learning_rates["adam"])
    data = experiment.make_data(seed)
    scale = {"sum": 1.0, "mean-batch": float(batch_size), "mean-all": float(batch_size * wp.SAMPLES)}[
        settings["reduction"]]
    test_batch, test_clean = reference["batch"], reference["clean"]
    test_input = test_batch.y_star.float()
    history = History(experiment=experiment.name, method="adam", network=network)
    y_clean: List[float] = []
    amplitude_mean: List[float] = []
    tests: Dict[str, List[float]] = {"iteration": [], "y": [], "y_clean": [], "xi0": []}

    def evaluate_test(after: int) -> None:
        network.eval()
        with torch.no_grad():
            metrics = test_metrics(network(test_input), test_batch, test_clean)
        network.train()
        tests["iteration"].append(after)
        for key in ("y", "y_clean", "xi0"):
            tests[key].append(metrics[key])

    with torch.no_grad():  # how much the untrained network's output depends on its input
        features = network.convolutions(test_input.unsqueeze(1)).flatten(1)
        initial = network(test_input)
    init_diagnostics = {
        "xi0_std": float(initial[:, 0].std()), "xi0_mean": float(initial[:, 0].mean()),
        "amplitude_std": float(initial[:, 1].std()), "amplitude_mean": float(initial[:, 1].mean()),
        "feature_variation": float(features.std(0).mean() / features.abs().mean().clamp_min(1e-30))}
    start = time.perf_counter()
    evaluate_test(0)
    for iteration in range(1, iterations + 1):
        batch = data.sample(batch_size)
        x = experiment.predict(network, batch)
        loss = experiment.y_loss(experiment.simulate(x, batch, "adjoint"), batch)
        history.iteration.append(iteration)
        history.wall_seconds.append(time.perf_counter() - start)
        history.y_loss.append(float(loss.detach()) / batch_size)
        history.x_mae.append(float(experiment.x_metric(x.detach(), batch)))
        with torch.no_grad():
            clean = physgrad.wave_packet(batch.x_star, samples=wp.SAMPLES, sigma=wp.SIGMA)
            y = physgrad.wave_packet(x.detach(), samples=wp.SAMPLES, sigma=wp.SIGMA)
            y_clean.append(float(0.5 * (y - clean).pow(2).sum()) / batch_size)
            amplitude_mean.append(float(x[:, 1].mean()))
        optimizer.zero_grad(set_to_none=True)
        (loss / scale if scale != 1.0 else loss).backward()
        optimizer.step()
        if iteration % eval_every == 0 or iteration == iterations:
            evaluate_test(iteration)
    seconds = time.perf_counter() - start

    fit = reference["rows"]["unbounded"]
    steps = history.iteration
    y_mean, xi0_mean, clean_mean = (trailing_mean(v) for v in (history.y_loss, history.x_mae, y_clean))

    def trailing_cross(means: List[Optional[float]], level: float) -> Optional[int]:
        return first_at_or_below([s for s, m in zip(steps, means) if m is not None],
                                 [m for m in means if m is not None], level)

    c64 = centred_mean(history.x_mae)
    crossings = {
        "train_y": trailing_cross(y_mean, fit["y"]),
        "train_xi0": trailing_cross(xi0_mean, fit["xi0"]),
        "train_y_clean": trailing_cross(clean_mean, fit["y_clean"]),
        "train_xi0_c64": first_at_or_below(list(c64), list(c64.values()), fit["xi0"]),
        "test_y": first_at_or_below(tests["iteration"], tests["y"], fit["y"]),
        "test_xi0": first_at_or_below(tests["iteration"], tests["xi0"], fit["xi0"]),
        "test_y_clean": first_at_or_below(tests["iteration"], tests["y_clean"], fit["y_clean"]),
    }
    official = wp.evaluate_against_fitter(experiment, {"adam": network}, histories={"adam": history})
    row = official["rows"]["adam"]
    crossings_bounded = {"train_y": row["beats_fit_bounded_y_loss_at"],
                         "train_xi0": row["beats_fit_bounded_xi0_at"]}
    agrees = (row["beats_fit_y_loss_at"] == crossings["train_y"]
              and row["beats_fit_xi0_at"] == crossings["train_xi0"])
    sampled = [i for i in range(CURVE_STEP - 1, len(steps), CURVE_STEP)]
    return {
        "variant": name, "seed": seed, "settings": settings, "iterations": iterations,
        "seconds": round(seconds, 2), "crossings": crossings, "crossings_bounded_fitter": crossings_bounded,
        "evaluate_against_fitter_agrees": agrees, "init_diagnostics": {
            key: _round(value, 3) for key, value in init_diagnostics.items()},
        "final_test": {key: (row[key] if key in row else None)
                       for key in ("y_loss", "xi0_mae", "amplitude_mae", "failed")},
        "curve": {"iteration": [steps[i] for i in sampled],
                  "train_y_mean10": [_round(y_mean[i]) for i in sampled],
                  "train_xi0_mean10": [_round(xi0_mean[i]) for i in sampled],
                  "train_y_clean_mean10": [_round(clean_mean[i]) for i in sampled],
                  "amplitude_mean10": [_round(v) for v in
                                       (trailing_mean(amplitude_mean)[i] for i in sampled)]},
        "test_curve": {key: [_round(v) for v in values] if key != "iteration" else values
                       for key, values in tests.items()},
        "history_y_loss": history.y_loss, "history_x_mae": history.x_mae,
    }


def _round(value: Optional[float], digits: int = 5) -> Optional[float]:
    if value is None or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


def check_loop(iterations: int = 20, seed: int = 0) -> bool:
    """The ``paper`` variant's training curve equals physgrad.training.train's (bitwise)."""
    from physgrad.training import train
    reference = fitter_reference(1.0, 100)
    ours = run_variant("paper", seed, iterations, reference, eval_every=iterations, test_size=100)
    theirs = train("wave-packet", "adam", iterations=iterations, seed=seed, progress=False,
                   handle_signals=False)
    return ours["history_y_loss"] == theirs.y_loss and ours["history_x_mae"] == theirs.x_mae


def to_json(report: Dict[str, Any]) -> str:
    """Indented JSON with every list of numbers on one line."""
    text = json.dumps(report, indent=1)
    return re.sub(r"\[([-0-9.eE+,\s]|null|NaN|Infinity)*\]",
                  lambda m: "[" + " ".join(m.group(0)[1:-1].split()) + "]", text) + "\n"


def machine_info() -> Dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as stream:
            model = next(line.split(":", 1)[1].strip() for line in stream if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        commit = ""
    return {"cpu": model, "nproc": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "physgrad": physgrad.library_version(), "commit": commit, "load_average": os.getloadavg()}


def _cell(values: Sequence[Optional[int]], limit: int) -> str:
    return " / ".join(f">{limit}" if v is None else str(v) for v in values)


def markdown(report: Dict[str, Any]) -> str:
    limit = report["settings"]["iterations"]
    lines = ["# Wave-packet study: when does the adam network beat the unbounded fitter?", "",
             f"Command: `{report['command']}`  ",
             f"Date: {report['date']}; machine: {report['machine']['cpu']}, {report['machine']['nproc']} cores, "
             f"torch threads {report['machine']['torch_threads']}, commit {report['machine']['commit']}; "
             f"compute {report['seconds']:.0f} s.", "",
             f"Adam lr 1e-3, batch 100, adjoint; {limit} iterations per run; seeds "
             f"{', '.join(map(str, report['settings']['seeds']))} (cells: seed by seed); test set "
             f"{report['settings']['test_size']} examples (seed {wp.TEST_SEED}), evaluated every "
             f"{report['settings']['eval_every']} iterations. `>{limit}`: not within the run.", "",
             "## Fitter on the test set", "",
             "| noise std | fitter | y-loss (noisy) | y-loss (clean) | xi0 MAE | failed | outside range |",
             "|---|---|---|---|---|---|---|"]
    for noise, ref in report["fitter"].items():
        for name, row in ref.items():
            extra = (f"{100 * row['failed']:.1f}% | {100 * row['outside_range']:.1f}%"
                     if "failed" in row else "- | -")
            lines.append(f"| {noise} | {name} | {row['y']:.2f} | {row['y_clean']:.2f} | {row['xi0']:.2f} | {extra} |")
    lines += ["", "## First iteration beating the unbounded fitter", "",
              "train y / train xi0: 10-iteration trailing mean of the training curve vs the fitter's test "
              "value (what `evaluate_against_fitter` reports); y clean: objective against the clean "
              "packet; c64: centred 64-iteration mean (PhiFlow's plot smoothing); test: the network on "
              "the test set.", "",
              "| variant | " + " | ".join(label for _, label in MEASURES) + " | final test xi0 MAE | s / run |",
              "|---|" + "---|" * (len(MEASURES) + 2)]
    for name in report["settings"]["variants"]:
        runs = [r for r in report["runs"] if r["variant"] == name]
        cells = [_cell([r["crossings"][key] for r in runs], limit) for key, _ in MEASURES]
        mae = " / ".join(f"{r['final_test']['xi0_mae']:.1f}" for r in runs)
        secs = sum(r["seconds"] for r in runs) / max(len(runs), 1)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mae} | {secs:.0f} |")
    lines += ["", "## The untrained network and the bounded fitter", "",
              "At iteration 0 on the test set: the spread (std over examples) of the predicted xi0 and A, "
              "and the conv features' variation over examples relative to their magnitude "
              "(the mean over features of the std over examples, divided by the mean |feature|). "
              "Last columns: the first iteration beating the bounded fitter "
              "(L-BFGS-B within the data ranges; training curve, 10-mean).", "",
              "| variant | xi0 std at init | A std at init | feature variation at init | "
              "train y vs bounded | train xi0 vs bounded |", "|---|---|---|---|---|---|"]
    for name in report["settings"]["variants"]:
        runs = [r for r in report["runs"] if r["variant"] == name]
        diag = [r["init_diagnostics"] for r in runs]
        lines.append(f"| {name} | " + " / ".join(f"{d['xi0_std']:.2g}" for d in diag) + " | "
                     + " / ".join(f"{d['amplitude_std']:.2g}" for d in diag) + " | "
                     + " / ".join(f"{d['feature_variation']:.2g}" for d in diag) + " | "
                     + _cell([r["crossings_bounded_fitter"]["train_y"] for r in runs], limit) + " | "
                     + _cell([r["crossings_bounded_fitter"]["train_xi0"] for r in runs], limit) + " |")
    lines += ["", "## Training curve (10-iteration means, first seed)", "",
              "| variant | " + " | ".join(f"it {i}" for i in report["settings"]["curve_points"]) + " |",
              "|---|" + "---|" * len(report["settings"]["curve_points"])]
    for name in report["settings"]["variants"]:
        run = next(r for r in report["runs"] if r["variant"] == name)
        curve = run["curve"]
        cells = []
        for point in report["settings"]["curve_points"]:
            if point in curve["iteration"]:
                k = curve["iteration"].index(point)
                cells.append(f"y {curve['train_y_mean10'][k]:.4g}, xi0 {curve['train_xi0_mean10'][k]:.3g}, "
                             f"A {curve['amplitude_mean10'][k]:.2f}")
            else:
                cells.append("-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Variants:", ""]
    for name in report["settings"]["variants"]:
        lines.append(f"- `{name}`: {VARIANTS[name]['description']}")
    agrees = all(r["evaluate_against_fitter_agrees"] for r in report["runs"])
    lines += ["", f"train y / train xi0 equal `evaluate_against_fitter`'s `beats_fit_*` in every run: {agrees}."]
    if report.get("loop_matches_train") is not None:
        lines.append(f"The study's loop reproduces `physgrad.training.train` bitwise "
                     f"({report['loop_check_iterations']} iterations): "
                     f"{report['loop_matches_train']}.")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (JSON and Markdown)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (network and data)")
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=5, help="test-set evaluation interval")
    parser.add_argument("--check-loop", action="store_true",
                        help="also check the loop against physgrad.training.train (20 iterations; 5 with --quick)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: {', '.join(QUICK_VARIANTS)}, 5 iterations, seed 0, 100 test examples")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        variants, seeds, iterations, test_size, eval_every = list(QUICK_VARIANTS), [0], 5, 100, 1
    else:
        variants = [v for v in args.variants.split(",") if v]
        seeds = [int(s) for s in args.seeds.split(",") if s]
        iterations, test_size, eval_every = args.iterations, args.test_size, args.eval_every
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    started = time.perf_counter()
    references: Dict[float, Dict[str, Any]] = {}
    runs = []
    for name in variants:
        noise = dict(DEFAULTS, **VARIANTS[name]["changes"])["noise_std"]
        if noise not in references:
            references[noise] = fitter_reference(noise, test_size)
        for seed in seeds:
            run = run_variant(name, seed, iterations, references[noise], eval_every, test_size)
            print(f"{name} seed {seed}: {run['seconds']:.1f} s, crossings {run['crossings']}", flush=True)
            runs.append(run)
    loop_iterations = 5 if args.quick else 20
    loop_ok = check_loop(loop_iterations) if args.check_loop else None
    for run in runs:  # full per-iteration logs stay out of the JSON (the curve holds 10-iteration means)
        run.pop("history_y_loss")
        run.pop("history_x_mae")
    report = {
        "command": " ".join(["benchmarks/wave_packet_study.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(), "seconds": time.perf_counter() - started,
        "settings": {"variants": variants, "seeds": seeds, "iterations": iterations, "test_size": test_size,
                     "eval_every": eval_every, "defaults": DEFAULTS,
                     "curve_points": [p for p in (10, 40, 100, 200, 300, 400) if p <= iterations]
                     or [iterations - iterations % CURVE_STEP or CURVE_STEP]},
        "fitter": {str(noise): {k: {key: _round(v) for key, v in row.items()} for k, row in ref["rows"].items()}
                   for noise, ref in references.items()},
        "runs": runs, "loop_matches_train": loop_ok, "loop_check_iterations": loop_iterations,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "wave_packet_study.json"), "w") as stream:
        stream.write(to_json(report))
    text = markdown(report)
    with open(os.path.join(args.out, "wave_packet_study.md"), "w") as stream:
        stream.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
