"""scripts/check_import_cycles.py: physgrad's modules import each other one way only,
and the checker finds circles, also through imports inside functions."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_import_cycles.py"


def _check(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True,
                          timeout=60)


def _package(root: Path, files: dict) -> Path:
    """A package ``pkg`` under ``root`` with ``files`` (relative path -> source)."""
    package = root / "pkg"
    for name, source in {"__init__.py": "", **files}.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return package


def test_physgrad_has_no_import_cycle():
    done = _check()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no cycle" in done.stdout


def test_a_circle_through_an_import_inside_a_function_is_found(tmp_path):
    package = _package(tmp_path, {
        "a.py": "from .b import helper\n",
        "b.py": "def helper():\n    from . import a\n    return a\n",
        "c.py": "import pkg.a\n",
    })
    done = _check(str(package))
    assert done.returncode == 1
    assert "import cycle among 2 modules: pkg.a, pkg.b" in done.stdout
    assert "a.py:1: pkg.a imports pkg.b" in done.stdout
    assert "b.py:2: pkg.b imports pkg.a" in done.stdout
    assert "pkg.c" not in done.stdout  # it only uses the circle


def test_a_longer_circle_is_shown_link_by_link(tmp_path):
    package = _package(tmp_path, {
        "sub/__init__.py": "from .x import X\n",
        "sub/x.py": "class X:\n    def f(self):\n        import pkg.top\n",
        "top.py": "try:\n    from pkg import middle\nexcept ImportError:\n    middle = None\n",
        "middle.py": "from .sub import X\n",
    })
    done = _check(str(package))
    assert done.returncode == 1
    assert "import cycle among 4 modules: pkg.middle, pkg.sub, pkg.sub.x, pkg.top" in done.stdout
    for link in ("pkg.middle imports pkg.sub", "pkg.sub imports pkg.sub.x",
                 "pkg.sub.x imports pkg.top", "pkg.top imports pkg.middle"):
        assert link in done.stdout


def test_type_checking_imports_and_one_way_imports_pass(tmp_path):
    package = _package(tmp_path, {
        "__init__.py": "from . import low, high\n",
        "low.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .high import H\n",
        "high.py": "from .low import *\nimport os\nfrom . import low as again\n",
    })
    done = _check(str(package))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 modules" not in done.stdout and "3 modules, 3 imports between them: no cycle" in done.stdout


def test_a_folder_that_is_not_a_package_is_refused(tmp_path):
    done = _check(str(tmp_path))
    assert done.returncode == 2 and "not a package folder" in done.stderr
