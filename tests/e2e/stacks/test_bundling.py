"""Lambda assets without Docker: copy sources, pip-install arm64 wheels, compile bytecode, hash what goes in."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from testkit.bundles import RUNTIME_TAG, assert_runtime_bytecode, runtime_python, sources

from stacks import bundling
from stacks.bundling import LocalPythonBundler, asset_fingerprint, pinned, pip_command

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "lambdas" / "fn").mkdir(parents=True)
    (root / "lambdas" / "fn" / "handler.py").write_text("def handler(event, context):\n    return event\n")
    (root / "lambdas" / "other").mkdir()
    (root / "lambdas" / "other" / "handler.py").write_text("x = 1\n")
    (root / "bxb_runtime" / "__pycache__").mkdir(parents=True)
    (root / "bxb_runtime" / "__init__.py").write_text("")
    (root / "bxb_runtime" / "mod.py").write_text("A = 1\n")
    (root / "bxb_runtime" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"junk")
    (root / "bxb_stream").mkdir()  # the tooling: never shipped
    (root / "bxb_stream" / "cli.py").write_text("B = 1\n")
    return root


def test_pip_fetches_only_lambda_compatible_wheels() -> None:
    command = pip_command("/out", ["msgspec"], python="python3")
    assert command[:4] == ["python3", "-m", "pip", "install"]
    joined = " ".join(command)
    assert "--platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64" in joined
    assert "--python-version 3.12" in joined
    assert "--only-binary=:all:" in command
    assert command[-3:] == ["--target", "/out", "msgspec"]


def test_pip_for_this_machine_takes_no_platform() -> None:
    command = pip_command("/out", ["msgspec"], python="python3", platforms=())
    assert not {"--platform", "--python-version", "--implementation", "--only-binary=:all:"} & set(command)
    assert command[-3:] == ["--target", "/out", "msgspec"]


def test_bundle_copies_handler_and_package_only(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert LocalPythonBundler(tree, "lambdas/fn", ()).try_bundle(str(out)) is True
    assert sources(out) == ["bxb_runtime/__init__.py", "bxb_runtime/mod.py", "lambdas/fn/handler.py"]
    assert_runtime_bytecode(out)  # compiled for the runtime; the tree's own cpython-311 cache is not copied


def test_bundle_bytecode_is_what_the_runtime_loads(tree: Path, tmp_path: Path) -> None:
    # Lambda's task directory is read-only (-B): the shipped bytecode is used as it is, whatever the zip did
    # to file times; and a source edited after bundling (the Lambda console) runs its edit, never stale bytecode.
    out = tmp_path / "out"
    out.mkdir()
    LocalPythonBundler(tree, "lambdas/fn", ()).try_bundle(str(out))
    source, pyc = out / "bxb_runtime" / "mod.py", out / "bxb_runtime" / "__pycache__" / f"mod.{RUNTIME_TAG}.pyc"
    os.utime(source, (315_532_800, 315_532_800))  # 1980-01-01, as a zip may store it

    def run() -> tuple[str, str]:
        script = "import sys; sys.path.insert(0, sys.argv[1]); import bxb_runtime.mod as m; print(m.A)"
        done = subprocess.run(
            [runtime_python(), "-B", "-v", "-c", script, str(out)], capture_output=True, text=True, timeout=60
        )
        return done.stdout.strip(), done.stderr

    value, log = run()
    assert value == "1" and f"code object from '{pyc}'" in log
    source.write_text("A = 2\n")
    value, log = run()
    assert value == "2" and f"code object from {source}" in log


def test_bundle_refuses_a_module_that_does_not_compile(tree: Path, tmp_path: Path) -> None:
    (tree / "bxb_runtime" / "broken.py").write_text("def f(:\n")
    with pytest.raises(RuntimeError, match=r"compileall failed.*broken\.py"):
        LocalPythonBundler(tree, "lambdas/fn", ()).try_bundle(str(tmp_path))


def test_without_a_runtime_python_the_bundle_ships_sources_and_says_so(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundling, "bytecode_python", lambda: None)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.warns(UserWarning, match="no Python 3.12 found: the bundle ships without bytecode"):
        LocalPythonBundler(tree, "lambdas/fn", ()).try_bundle(str(out))
    assert sources(out) == ["bxb_runtime/__init__.py", "bxb_runtime/mod.py", "lambdas/fn/handler.py"]
    assert not list(out.rglob("*.pyc"))


def test_bytecode_python_is_a_runnable_3_12(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert bundling.bytecode_python("/opt/py312", (3, 12)) == "/opt/py312"  # this interpreter, when it is 3.12
    # Otherwise python3.12 on PATH, only if it runs as 3.12 (a pyenv shim exists even when its version is off).
    shim = tmp_path / "python3.12"
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.12: command not found' >&2; exit 127\n")
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert bundling.bytecode_python.__wrapped__("/opt/py311", (3, 11)) is None
    shim.write_text("#!/bin/sh\necho 3.12\n")
    assert bundling.bytecode_python.__wrapped__("/opt/py311", (3, 11)) == str(shim)
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    assert bundling.bytecode_python.__wrapped__("/opt/py311", (3, 11)) is None


def test_bundle_refuses_a_function_without_handler(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"lambdas/missing/handler\.py"):
        LocalPythonBundler(tree, "lambdas/missing", ()).try_bundle(str(tmp_path))


def test_bundle_reports_pip_failure(tree: Path, tmp_path: Path) -> None:
    # A requirement that cannot exist fails pip before any download (invalid name).
    with pytest.raises(RuntimeError, match="pip could not fetch"):
        LocalPythonBundler(tree, "lambdas/fn", ("not a valid requirement!!",)).try_bundle(str(tmp_path))


def test_fingerprint_follows_every_input(tree: Path) -> None:
    base = asset_fingerprint(tree, "lambdas/fn", ["msgspec"])
    assert asset_fingerprint(tree, "lambdas/fn", ["msgspec"]) == base
    assert asset_fingerprint(tree, "lambdas/fn", ["msgspec", "clickhouse-connect"]) != base
    assert asset_fingerprint(tree, "lambdas/other", ["msgspec"]) != base
    (tree / "bxb_runtime" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"other junk")
    assert asset_fingerprint(tree, "lambdas/fn", ["msgspec"]) == base  # caches do not count
    (tree / "bxb_stream" / "cli.py").write_text("B = 2\n")
    assert asset_fingerprint(tree, "lambdas/fn", ["msgspec"]) == base  # the tooling is not shipped
    (tree / "bxb_runtime" / "mod.py").write_text("A = 2\n")
    assert asset_fingerprint(tree, "lambdas/fn", ["msgspec"]) != base  # the runtime package is


def test_real_transform_sources_bundle(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    LocalPythonBundler(REPO, "lambdas/transform", ()).try_bundle(str(out))
    assert (out / "lambdas" / "transform" / "handler.py").is_file()
    assert (out / "bxb_runtime" / "events" / "schema.py").is_file()
    assert not (out / "bxb_stream").exists()
    assert_runtime_bytecode(out)
    shutil.rmtree(out)


def test_bundled_dependencies_are_pinned_from_requirements(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# runtime\nmsgspec==0.22.0\nClickhouse-Connect==1.12.0  # driver\nrich\n")
    assert pinned("msgspec", "clickhouse-connect", requirements=requirements) == (
        "msgspec==0.22.0",
        "Clickhouse-Connect==1.12.0",
    )
    with pytest.raises(ValueError, match="rich"):
        pinned("rich", requirements=requirements)
    from stacks.functions import INGEST_REQUIREMENTS, TRANSFORM_REQUIREMENTS

    assert all("==" in r for r in TRANSFORM_REQUIREMENTS + INGEST_REQUIREMENTS)
