"""Lambda assets without Docker: copy sources, pip-install arm64 wheels, hash what goes in."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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


def test_bundle_copies_handler_and_package_only(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert LocalPythonBundler(tree, "lambdas/fn", ()).try_bundle(str(out)) is True
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["bxb_runtime/__init__.py", "bxb_runtime/mod.py", "lambdas/fn/handler.py"]


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
    assert not list(out.rglob("__pycache__"))
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
