"""Smoke test of benchmarks/bench_ops.py: ``--quick`` runs on tiny sizes, writes its
JSON and Markdown, and the plain-PyTorch references agree with the ops.  Timings
are never asserted (the machine is shared; they are the benchmark's output)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_writes_its_outputs_and_the_references_agree(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "python"), env.get("PYTHONPATH")) if p)
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_ops.py"), "--quick", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    report = json.loads((tmp_path / "bench_ops.json").read_text())
    markdown = (tmp_path / "bench_ops.md").read_text()
    assert markdown.startswith("# physgrad op benchmarks") and "## Ops" in markdown
    assert {"poisson", "heat", "fluid", "sine", "wave_packet"} <= {r["op"] for r in report["results"]}
    assert {r["impl"] for r in report["results"]} >= {"physgrad", "torch", "step"}
    assert all(r["timings"] and r["load_average"] for r in report["results"])
    steps = [r for r in report["results"] if r["kind"] == "step"]
    for r in steps:  # adam+pg over adam within each repetition: positive, between the extremes
        paired = r["timings"]["ratio/total"]
        assert 0 < paired["min"] <= paired["median"] <= paired["max"], paired
    floors = [r for r in report["results"] if r["kind"] == "floor"]  # heat vs FFTW in the same process
    assert floors and all(r["timings"]["ratio/op_over_floor"]["median"] > 0 for r in floors)
    assert report["machine"]["nproc"] >= 1 and len(report["load_average"]["start"]) == 3

    assert {key.split("/")[0] for key in report["agreement"]} == {"poisson", "heat", "fluid", "sine", "wave_packet"}
    for key, row in report["agreement"].items():
        assert row["ok"] and row["relative_difference"] <= row["threshold"], (key, row)
    assert any(r.get("memory") for r in report["results"])  # one subprocess measured peak memory
