"""The README's usage example runs as written (with fewer iterations)."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_usage_example_trains():
    text = README.read_text()
    example = re.search(r"```python\n(import torch, physgrad\n.*?)```", text, re.S).group(1)
    assert "range(100)" in example
    namespace: dict = {}
    exec(compile(example.replace("range(100)", "range(2)"), str(README), "exec"), namespace)
    assert namespace["x"].shape == (16, 1, 64, 64)
    assert namespace["loss"].isfinite()
    assert all(p.grad is not None for p in namespace["net"].parameters())
