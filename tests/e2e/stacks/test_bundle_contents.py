"""Each Lambda bundle, built as the stacks build it (stacks.bundling, arm64 wheels): its contents and size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from testkit.bundles import assert_runtime_bytecode

from stacks.bundling import LocalPythonBundler
from stacks.functions import INGEST_DIR, INGEST_REQUIREMENTS, TRANSFORM_DIR, TRANSFORM_REQUIREMENTS

REPO = Path(__file__).resolve().parents[3]
LAMBDA_LIMIT_MB = 250  # unzipped, layers included
BUNDLES = {
    # function dir, requirements, target MB unzipped (issue 13: the ingest <= 30), packages it needs
    "transform": (TRANSFORM_DIR, TRANSFORM_REQUIREMENTS, 10, {"msgspec", "pybase64"}),
    "ingest": (INGEST_DIR, INGEST_REQUIREMENTS, 30, {"msgspec", "pybase64", "clickhouse_connect"}),
}


def listing(root: Path) -> dict[str, float]:
    """MB per top-level entry of the bundle."""
    sizes: dict[str, float] = {}
    for path in root.rglob("*"):
        if path.is_file():
            top = path.relative_to(root).parts[0]
            sizes[top] = sizes.get(top, 0.0) + path.stat().st_size / 1e6
    return {name: round(mb, 3) for name, mb in sorted(sizes.items(), key=lambda kv: -kv[1])}


@pytest.mark.slow
@pytest.mark.parametrize("function", sorted(BUNDLES))
def test_bundle_holds_the_runtime_and_its_wheels_only(function: str, tmp_path: Path) -> None:
    function_dir, requirements, target_mb, needed = BUNDLES[function]
    out = tmp_path / function
    out.mkdir()
    LocalPythonBundler(REPO, function_dir, requirements).try_bundle(str(out))
    sizes = listing(out)
    total = round(sum(sizes.values()), 2)
    print(f"{function} bundle: {total} MB unzipped: {json.dumps(sizes)}")  # pytest -s shows the listing
    assert {"lambdas", "bxb_runtime"} | needed <= set(sizes)
    assert [p.relative_to(out).as_posix() for p in (out / "lambdas").rglob("*.py")] == [f"{function_dir}/handler.py"]
    # The tooling, and what only the tooling needs, never ship.
    assert not {"bxb_stream", "pyarrow", "chdb", "moto", "boto3", "aws_cdk", "numpy", "pandas"} & set(sizes)
    assert_runtime_bytecode(out)  # each module's 3.12 bytecode, and no other
    assert total <= target_mb < LAMBDA_LIMIT_MB
