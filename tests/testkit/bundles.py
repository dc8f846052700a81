"""Checks on a built Lambda bundle: the bytecode it ships is the Lambda runtime's."""

from __future__ import annotations

import subprocess
from pathlib import Path

from stacks import bundling

RUNTIME_TAG = "cpython-" + bundling.PYTHON_VERSION.replace(".", "")  # the pycs' cache tag: cpython-312


def runtime_python() -> str:
    python = bundling.bytecode_python()
    assert python, "the tests need a Python 3.12 (the Lambda runtime's) to compile bundles with"
    return python


def sources(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.suffix != ".pyc")


def assert_runtime_bytecode(out: Path) -> None:
    """Every module has its 3.12 bytecode, checked-hash (flags 0b11), with 3.12's magic; no other pycs."""
    magic = subprocess.run(
        [runtime_python(), "-c", "import importlib.util, sys; sys.stdout.buffer.write(importlib.util.MAGIC_NUMBER)"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    modules = sorted(out.rglob("*.py"))
    pycs = sorted(out.rglob("*.pyc"))
    expected = [p.parent / "__pycache__" / f"{p.stem}.{RUNTIME_TAG}.pyc" for p in modules]
    assert modules and sorted(expected) == pycs
    for pyc in pycs:
        header = pyc.read_bytes()[:8]
        assert header[:4] == magic and int.from_bytes(header[4:8], "little") == 0b11, pyc
