"""The layout keeps the architecture's direction (docs/architecture.md): the import contracts in
pyproject.toml hold, only the `run` command loads the daemon, and the daemon mixes in no worker."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

from textback import daemon

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_only_the_run_command_imports_the_daemon():
    importers = []
    for path in sorted((ROOT / "textback").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "textback.daemon":
                importers.append(path.relative_to(ROOT).as_posix())
    assert importers == ["textback/cli.py"]
    source = (ROOT / "textback" / "cli.py").read_text()
    run = source[source.index("def run("):source.index("\ndef ", source.index("def run("))]
    assert "from textback.daemon import Daemon" in run


def test_the_daemon_composes_its_workers_and_inherits_none():
    assert daemon.Daemon.__bases__ == (object,)
    assert not any(name.endswith("Worker") or name.endswith("Runner")
                   for klass in inspect.getmro(daemon.Daemon) for name in [klass.__name__])


CLOCKS_AND_FILES = {("datetime", "now"), ("datetime", "utcnow"), ("date", "today"), ("time", "time"),
                    ("time", "monotonic"), ("time", "sleep"), ("asyncio", "sleep"), ("os", "environ"),
                    ("os", "getenv")}


def test_the_core_reads_no_clock_no_file_and_no_environment():
    """The core takes the time and the facts as arguments, so that a test can replay any moment."""
    found = []
    for path in sorted((ROOT / "textback" / "core").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and (node.value.id, node.attr) in CLOCKS_AND_FILES:
                found.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
                found.append(f"{path.name}:{node.lineno} open()")
    assert found == []
    assert len(list((ROOT / "textback" / "core").glob("*.py"))) > 20  # the folder is the core
