"""The figures and tables of ``python3 -m physgrad reproduce``, made from the runs
of :data:`physgrad.reproduce.PLAN` (full training logs in ``<runs>/<experiment>/seed<k>``).

Per experiment, into ``<results>/<experiment>/``:

* ``learning_curves.png``: the paper's learning-curve panel: the experiment's
  x-space metric (running mean over the paper's window) against the training
  iteration, log y axis, one colour per method, the mean over seeds as a line
  and the range over seeds as a band;
* ``curves.csv``: the same curves subsampled (at most ~400 iterations per run,
  denser at the start): iteration, method, seed, smoothed metric and y-loss;
* ``table.md`` / ``table.csv``: the headline numbers, the paper's and
  physgrad's side by side, with the settings and every deviation;
* ``provenance.json``: the command, git commit, machine, date, and how far
  each run got (iterations done of the target);
* per experiment extras from the trained networks of seed 0: the wave packet's
  evaluation against the fitter (``evaluation.json``, ``wave_packet_example.png``,
  figure 1), the fluid's example reconstruction (``fluid_example.png``, figure 13),
  the sine's gradient field (``gradients.png``, figure 9).

``<results>/README.md`` collects the tables. A run that has not reached its
target is reported at the iteration it reached and marked as such: never
under the target's name.
"""
from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import subprocess
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .reproduce import NAMES, run_folder
from .reproduce_curves import (collect, first_at_or_below, fmt, mean, plot_curves, plot_sine_gradients, smoothed,
                               value_at, write_curves)

__all__ = ["write_report", "collect", "PAPER"]

#: running-mean windows of the paper's learning-curve figures (iterations)
WINDOWS = {"sin": 1000, "wave_packet": 10, "poisson": 64, "heat": 64, "fluid": 64}
#: the window used in --quick reports (tiny runs)
QUICK_WINDOW = 2

#: The paper's claims that each table compares against (its text and figures).
PAPER: Dict[str, str] = {
    "sin": "Fig. 3 / 3.1: PG with the analytic inverse reaches an objective of ~1e-5, about 1000x better "
           "than Adam after 10k+ iterations; Newton converges for some initializations only; supervised "
           "training performs poorly (running mean over 1000 batches).",
    "wave_packet": "Fig. 1 / 8, B.1: the network (Adam) beats per-example L-BFGS-B (start (128, 2)) after 30-40 "
                   "training iterations; L-BFGS-B diverges in 0.12% of cases and misses packets far from the "
                   "start.",
    "poisson": "Fig. 4c / 3.2: PG ahead of Adam by 3x at iteration 60 and 10x after 5k (x-space error, running "
               "mean over 64 mini-batches); Adam and SGD with momentum slow down after ~200-300 iterations.",
    "heat": "Fig. 5c / 3.3: PG 34% more accurate than Adam at iteration 100 and 130% at 10k; Adam's 10k "
            "accuracy reached by PG at iteration 138 and by L-BFGS (n = 32) at 628.",
    "fluid": "Fig. 6c / 3.4: PG 2.3x more accurate than Adam at iteration 200 and 5x at 20k; Adam's 20k accuracy "
             "reached by PG in 55 iterations; Adam improves for ~100 iterations, then nearly stalls.",
}


# ---------------------------------------------------------------- provenance

def _git_commit(where: Optional[str] = None) -> str:
    """HEAD of the checkout holding ``where`` (default: this package), with
    "+uncommitted changes" when tracked files outside ``results/`` differ from
    it: the report is made before its logs and figures are committed, so changes
    under ``results/`` do not make the code that made them uncommitted."""
    here = where or os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                ":(top,exclude)results"], cwd=here, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return commit + ("+uncommitted changes" if dirty else "") if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as stream:
            for line in stream:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, {platform.system()} {platform.release()}"


def _provenance(data: Dict[str, Any], command: str) -> Dict[str, Any]:
    return {"command": command, "commit": _git_commit(), "machine": _machine(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in data["options"].items()},
            "stages": [{"methods": list(s.methods), "seeds": list(s.seeds), "iterations": s.iterations,
                        "batch_size": s.batch_size, "source": s.source} for s in data["stages"]],
            "runs": [{"seed": r["seed"], "method": r["method"], "iterations_done": r["done"],
                      "iterations_target": r["target"], "batch_size": r["batch_size"],
                      "complete": r["done"] >= r["target"],
                      "wall_seconds": r["history"].wall_seconds[-1] if r["history"] and r["done"] else None}
                     for r in data["runs"]]}


# ---------------------------------------------------------------- headline tables

def _complete(data: Dict[str, Any], method: str, seed: Optional[int] = None) -> Tuple[int, int]:
    """(shortest iterations done, target) over the method's runs (of ``seed``)."""
    runs = [r for r in data["runs"] if r["method"] == method and (seed is None or r["seed"] == seed)]
    if not runs:
        return 0, 0
    return min(r["done"] for r in runs), max(r["target"] for r in runs)


def _ratio_rows(data: Dict[str, Any], reference: str, methods: Sequence[str], iterations: Sequence[int],
                window: int) -> List[List[str]]:
    """Per checkpoint and method: the smoothed metric of the reference and of the
    method, each the mean over the seeds where both runs reached the checkpoint,
    their ratio, the number of such seeds and the ratio of each of them. The
    checkpoints are ``iterations`` and the last iteration every started pair reached."""
    def curve(method: str, seed: int) -> List[float]:
        run = next((r for r in data["runs"] if r["method"] == method and r["seed"] == seed), None)
        return smoothed(run, window) if run and run["done"] else []

    rows = []
    for method in methods:
        pairs = {seed: (curve(reference, seed), curve(method, seed)) for seed in data["seeds"]}
        pairs = {seed: pair for seed, pair in pairs.items() if pair[0] and pair[1]}
        if not pairs:
            continue
        common = min(min(len(a), len(b)) for a, b in pairs.values())
        longest = max(min(len(a), len(b)) for a, b in pairs.values())
        for iteration in sorted({i for i in iterations if i <= longest} | {common}):
            at = {seed: (a[iteration - 1], b[iteration - 1]) for seed, (a, b) in pairs.items()
                  if iteration <= min(len(a), len(b))}
            if not at:
                continue
            ref_mean = mean([a for a, _ in at.values()])
            method_mean = mean([b for _, b in at.values()])
            per_seed = ", ".join(f"{seed}: {fmt(a / b if b else None, 2)}" for seed, (a, b) in sorted(at.items()))
            rows.append([str(iteration), method, fmt(ref_mean), fmt(method_mean),
                         fmt(ref_mean / method_mean if method_mean else None), str(len(at)), per_seed])
    return rows


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _status_lines(data: Dict[str, Any]) -> List[str]:
    lines = []
    for run in data["runs"]:
        if not run["done"]:
            lines.append(f"seed {run['seed']} {run['method']}: **not started** ({run['target']} iterations at batch "
                         f"{run['batch_size']} planned)")
            continue
        state = "complete" if run["done"] >= run["target"] else f"**incomplete: {run['done']} of {run['target']}**"
        lines.append(f"seed {run['seed']} {run['method']}: {run['done']} iterations at batch {run['batch_size']} "
                     f"({state})")
    return lines


def headline(data: Dict[str, Any], window: int) -> Dict[str, Any]:
    """The experiment's comparison with the paper: ``{"header", "rows", "notes"}``."""
    name = data["name"]
    maker = _HEADLINES.get(name)
    return maker(data, window) if maker else {"header": [], "rows": [], "notes": []}


def _ratio_headline(reference: str, others: Sequence[str], checkpoints: Sequence[int]
                    ) -> Callable[[Dict[str, Any], int], Dict[str, Any]]:
    def make(data: Dict[str, Any], window: int) -> Dict[str, Any]:
        methods = [m for m in others if m in data["methods"]]
        rows = _ratio_rows(data, reference, methods, checkpoints, window)
        notes = []
        seeds = sorted({r["seed"] for r in data["runs"] if r["method"] == reference}) if methods else []
        for seed in seeds:  # per seed: where each method reaches the reference's final accuracy
            done_ref, target_ref = _complete(data, reference, seed)
            reference_run = next(r for r in data["runs"] if r["method"] == reference and r["seed"] == seed)
            ref_final = value_at(smoothed(reference_run, window), done_ref) if done_ref else None
            for method in methods:
                run = next((r for r in data["runs"] if r["method"] == method and r["seed"] == seed), None)
                if run is None or ref_final is None or not run["done"]:  # not started: listed under Runs
                    continue
                reached = first_at_or_below(smoothed(run, window), ref_final)
                notes.append(f"seed {seed}: {method} reaches {reference}'s accuracy at its iteration {done_ref} "
                             f"({fmt(ref_final)}) "
                             + (f"at iteration {reached}" if reached else f"never within {run['done']} iterations")
                             + ("" if done_ref >= target_ref else f" ({reference} incomplete: {done_ref} of "
                                                                  f"{target_ref})"))
        return {"header": ["iteration", "method", f"{reference} metric", "method metric",
                           f"{reference} / method", "seeds", "ratio per seed"], "rows": rows, "notes": notes}
    return make


_HEADLINES: Dict[str, Callable[[Dict[str, Any], int], Dict[str, Any]]] = {
    "sin": _ratio_headline("adam", ("adam+pg", "adam+newton", "adam+inverse-gradient", "supervised"),
                           (100, 1000, 3000, 10000)),
    "wave_packet": _ratio_headline("adam", ("adam+pg", "adam+newton"), (10, 40, 100, 300, 1000)),
    "poisson": _ratio_headline("adam", ("adam+pg", "sgd"), (60, 200, 1000, 5000)),
    "heat": _ratio_headline("adam", ("adam+pg", "adam+lbfgs"), (40, 100, 138, 628, 1000, 3000)),
    "fluid": _ratio_headline("adam", ("adam+pg",), (55, 100, 200, 1000)),
}


# ---------------------------------------------------------------- extras

def _load_network(experiment: Any, folder: str, method: str) -> Optional[Any]:
    """The trained network of a run: its final weights, else its checkpoint's."""
    import torch
    network = experiment.make_network()
    weights = os.path.join(folder, f"{method}.pt")
    if os.path.isfile(weights):
        network.load_state_dict(torch.load(weights, map_location="cpu"))
        return network
    checkpoint = os.path.join(folder, f"{method}.ckpt")
    if os.path.isfile(checkpoint):
        from .checkpoints import load_checkpoint
        state = load_checkpoint(checkpoint)
        network.load_state_dict(state["network"])
        return network
    return None


def _wave_packet_crossings(data: Dict[str, Any], evaluation: Dict[str, Any], table: Dict[str, Any]
                           ) -> Dict[str, Any]:
    """The paper's wave-packet claim for every seed: the first training iteration
    whose 10-iteration mean y-loss / xi0 MAE is at or below the fitter's on the
    test set (unbounded, the paper's; and bounded)."""
    from .experiments.wave_packet import FIT_BOUNDED, FIT_UNBOUNDED, first_iteration_below
    rows = evaluation["rows"]
    header = ["seed", "method", "beats unbounded fit: y-loss", "xi0 MAE", "beats bounded fit: y-loss", "xi0 MAE"]
    body = []
    for run in data["runs"]:
        history = run["history"]
        if history is None:
            continue
        cells = [str(run["seed"]), run["method"]]
        for fit in (FIT_UNBOUNDED, FIT_BOUNDED):
            for values, key in ((history.y_loss, "y_loss"), (history.x_mae, "xi0_mae")):
                at = first_iteration_below(values, rows[fit][key])
                cells.append(str(at) if at else f"never in {run['done']}")
        body.append(cells)
    notes = list(table["notes"]) + [
        f"fitters on the test set: unbounded y-loss {fmt(rows[FIT_UNBOUNDED]['y_loss'])}, xi0 MAE "
        f"{fmt(rows[FIT_UNBOUNDED]['xi0_mae'])}, outside the data range "
        f"{100 * rows[FIT_UNBOUNDED]['outside_range']:.2g}% (paper: diverges in 0.12%); bounded y-loss "
        f"{fmt(rows[FIT_BOUNDED]['y_loss'])}, xi0 MAE {fmt(rows[FIT_BOUNDED]['xi0_mae'])}",
        "why physgrad's crossing comes later than the paper's 30-40: docs/wave-packet-study.md (the network's "
        "initialization: with Glorot-uniform weights and zero biases, `init=\"glorot\"`, 41-51 iterations)"]
    return {"header": header, "rows": body, "notes": notes, "ratios": table}


def extras(data: Dict[str, Any], runs: str, out_dir: str, quick: bool) -> Dict[str, Any]:
    """Figures from the trained networks of seed 0 (see the module docstring)."""
    from .experiments import get_experiment
    name = data["name"]
    experiment = get_experiment(name, **data["options"])
    folder = run_folder(runs, name, 0)
    report: Dict[str, Any] = {}
    if name == "sin":
        report["gradients"] = plot_sine_gradients(os.path.join(out_dir, "gradients.png"))
    if name in ("poisson", "heat", "fluid"):
        # Fig. 4b / 5b / 6b and Table 1: single examples with gd, L-BFGS-B and the
        # inverse-physics iteration; the trained adam+pg network of seed 0, once
        # its run is complete, against them
        from . import optimize as single
        weights = os.path.join(folder, "adam+pg.pt")
        result = single.optimize(experiment, single.METHODS, iterations=3 if quick else None,
                                 examples=1 if quick else None, out_dir=os.path.join(out_dir, "optimize"),
                                 network_path=weights if os.path.isfile(weights) else None)
        report["optimize_table"] = result["table"]
    networks = {m: n for m in data["methods"] for n in [_load_network(experiment, folder, m)] if n is not None}
    if not networks:
        return report
    histories = {r["method"]: r["history"] for r in data["runs"] if r["seed"] == 0 and r["history"]}
    if name == "wave_packet":
        evaluation = experiment.evaluate(networks, out_dir, histories)
        report["evaluation"] = {k: v for k, v in evaluation.items() if k != "text"}
        report["evaluation_text"] = evaluation["text"]
    elif name == "fluid":
        evaluation = experiment.evaluate(networks, out_dir, histories, test_size=4 if quick else 16)
        report["evaluation_text"] = evaluation["text"] if evaluation else ""
    return report


# ---------------------------------------------------------------- the report

_TITLES = {"sin": "sin(a/x): objective sin(a/x) + 1", "wave_packet": "wave packet: xi0 MAE",
           "poisson": "Poisson: x MAE", "heat": "heat: x MAE", "fluid": "fluid: v0 error (sum over cells)"}


def write_report(names: Sequence[str], runs: str, results: str, quick: bool = False,
                 command: str = "") -> Dict[str, Any]:
    """Writes every experiment's report (see the module docstring) and
    ``<results>/README.md``; returns ``{name: {files..., "table"}}``."""
    from .experiments import get_experiment
    summary: Dict[str, Any] = {}
    command = command or "python3 -m physgrad " + " ".join(sys.argv[1:])
    for name in names:
        name = name.replace("-", "_")
        data = collect(name, runs, quick)
        out_dir = os.path.join(results, name)
        os.makedirs(out_dir, exist_ok=True)
        if not any(r["done"] for r in data["runs"]):
            summary[name] = {"missing": True}
            continue
        window = QUICK_WINDOW if quick else WINDOWS[name]
        experiment = get_experiment(name, **data["options"])
        entry: Dict[str, Any] = extras(data, runs, out_dir, quick)
        table = headline(data, window)
        references = None
        if name == "wave_packet" and "evaluation" in entry:
            table = _wave_packet_crossings(data, entry["evaluation"], table)
            from .experiments.wave_packet import FIT_BOUNDED, FIT_UNBOUNDED
            rows = entry["evaluation"]["rows"]
            references = {f"{fit} (test set)": (rows[fit]["xi0_mae"], rows[fit]["y_loss"])
                          for fit in (FIT_UNBOUNDED, FIT_BOUNDED)}
        entry["curves_png"] = plot_curves(data, out_dir, window, experiment.metric_description, _TITLES[name],
                                          references)
        entry["curves_csv"] = write_curves(data, out_dir, window)
        provenance = _provenance(data, command)
        with open(os.path.join(out_dir, "provenance.json"), "w") as stream:
            json.dump(provenance, stream, indent=2)
        with open(os.path.join(out_dir, "table.csv"), "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(table["header"])
            writer.writerows(table["rows"])
        lines = [f"## {name}", "", f"Paper: {PAPER[name]}", "",
                 f"physgrad (metric: {experiment.metric_description}; running mean over {window} iterations, "
                 "mean over seeds):", ""]
        lines += _table(table["header"], table["rows"]) if table["rows"] else ["(no runs reached a checkpoint)"]
        if "ratios" in table and table["ratios"]["rows"]:
            lines += ["", "Training xi0 MAE (10-iteration running mean, mean over seeds):", ""]
            lines += _table(table["ratios"]["header"], table["ratios"]["rows"])
        lines += [""] + [f"- {note}" for note in table["notes"]]
        if entry.get("evaluation_text"):
            lines += ["", "```", entry["evaluation_text"], "```"]
        if entry.get("optimize_table"):
            lines += ["", "Single examples (paper Fig. 4b / 5b / 6b; with the trained network: Table 1), "
                          "`optimize/optimize.png`:", "", entry["optimize_table"].rstrip()]
        lines += ["", "Runs:", ""] + [f"- {line}" for line in _status_lines(data)]
        lines += ["", f"Settings: {json.dumps(provenance['options'])}; "
                      + "; ".join(f"{s['methods']} seeds {s['seeds']} x {s['iterations']} at batch {s['batch_size']}"
                                  + (f" ({s['source']})" if s["source"] else "") for s in provenance["stages"]),
                  f"Made by `{provenance['command']}` at commit {provenance['commit']} on "
                  f"{provenance['machine']}, {provenance['date']}."]
        with open(os.path.join(out_dir, "table.md"), "w") as stream:
            stream.write("\n".join(lines) + "\n")
        entry["table"] = "\n".join(lines)
        summary[name] = entry
    _write_index(results, summary)
    return summary


def _write_index(results: str, summary: Dict[str, Any]) -> None:
    """``<results>/README.md``: every experiment's table.md that exists, in plan order."""
    parts = ["# Reproduction of the paper's results", "",
             "Made by `python3 -m physgrad reproduce` from the training logs of the runs in "
             "`physgrad.reproduce.PLAN`; each section is its experiment's `table.md` (figures beside it).", ""]
    for name in NAMES:
        path = os.path.join(results, name, "table.md")
        if os.path.isfile(path):
            with open(path) as stream:
                parts += [stream.read().rstrip(), "", f"![{name}]({name}/learning_curves.png)", ""]
    with open(os.path.join(results, "README.md"), "w") as stream:
        stream.write("\n".join(parts) + "\n")
