"""Smoke test of benchmarks/wave_packet_study.py: ``--quick --check-loop`` trains
two variants for 5 iterations, writes its JSON and Markdown, agrees with
``evaluate_against_fitter``, and its loop reproduces ``physgrad.training.train``
bitwise. The crossing iterations themselves are the study's output, not asserted."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_study_writes_its_outputs_and_matches_the_training_loop(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "python"), env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "wave_packet_study.py"), "--quick",
                           "--check-loop", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    report = json.loads((tmp_path / "wave_packet_study.json").read_text())
    markdown = (tmp_path / "wave_packet_study.md").read_text()
    assert markdown.startswith("# Wave-packet study")
    assert "| paper |" in markdown and "| init-glorot |" in markdown
    assert report["settings"]["variants"] == ["paper", "init-glorot"]
    assert report["settings"]["iterations"] == 5 and report["settings"]["seeds"] == [0]
    assert report["loop_matches_train"] is True
    fitter = report["fitter"]["1.0"]
    assert fitter["unbounded"]["y"] > 0 and 0 <= fitter["unbounded"]["failed"] <= 1
    assert len(report["runs"]) == 2
    for run in report["runs"]:
        assert run["evaluate_against_fitter_agrees"] is True
        assert set(run["crossings"]) == {"train_y", "train_xi0", "train_y_clean", "train_xi0_c64",
                                         "test_y", "test_xi0", "test_y_clean"}
        assert run["test_curve"]["iteration"] == [0, 1, 2, 3, 4, 5]
        assert all(v > 0 for v in run["test_curve"]["y"])
    paper, glorot = report["runs"]
    # Glorot init makes the untrained network's output depend on its input; PyTorch's default barely
    assert glorot["init_diagnostics"]["feature_variation"] > 10 * paper["init_diagnostics"]["feature_variation"]
