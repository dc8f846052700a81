"""The runtime (bxb_runtime/, lambdas/) never imports the tooling, and imports at load only what the Lambdas ship."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNTIME = sorted([*(REPO / "bxb_runtime").rglob("*.py"), *(REPO / "lambdas").rglob("*.py")])
# What a Lambda has at import: the runtime, its wheels, the Powertools layer, the Lambda runtime's botocore.
SHIPPED = {"bxb_runtime", "msgspec", "pybase64", "clickhouse_connect", "aws_lambda_powertools", "botocore"}
# Per function: stacks/functions.py's requirements (the transform does not ship clickhouse-connect).
WHEELS = {
    "transform": {"msgspec", "pybase64", "aws_lambda_powertools", "botocore"},
    "ingest": {"msgspec", "pybase64", "clickhouse_connect", "aws_lambda_powertools", "botocore"},
}


def imported(path: Path, *, module_level_only: bool = False) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.append((node.lineno, "bxb_runtime"))  # a relative import stays inside its package
    return found


def test_the_runtime_is_where_it_should_be():
    names = {p.relative_to(REPO).as_posix() for p in RUNTIME}
    assert {"bxb_runtime/transform/process.py", "bxb_runtime/ingest/service.py", "lambdas/ingest/handler.py"} <= names
    assert len(RUNTIME) > 20


@pytest.mark.parametrize("path", RUNTIME, ids=lambda p: p.relative_to(REPO).as_posix())
def test_runtime_never_imports_tooling(path: Path):
    upward = [(line, name) for line, name in imported(path) if name.split(".")[0] == "bxb_stream"]
    assert not upward, f"{path.relative_to(REPO)} imports the tooling: {upward}"


@pytest.mark.parametrize("path", RUNTIME, ids=lambda p: p.relative_to(REPO).as_posix())
def test_runtime_loads_only_what_the_lambdas_ship(path: Path):
    # pyarrow (the bench's baseline, Parquet in the local Firehose) may appear inside a function of the
    # shared schema, never at module level: the Lambdas do not have it.
    third_party = {
        name.split(".")[0]
        for _, name in imported(path, module_level_only=True)
        if name.split(".")[0] not in sys.stdlib_module_names and name != "__future__"
    }
    assert third_party <= SHIPPED, f"{path.relative_to(REPO)} loads {sorted(third_party - SHIPPED)} at import"


def _module_path(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def loaded_at_import(handler: Path) -> set[str]:
    """Top-level packages a handler loads at import: module-level imports, followed through bxb_runtime."""
    seen: set[Path] = set()
    todo, packages = [handler], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for _, name in imported(path, module_level_only=True):
            top = name.split(".")[0]
            if top == "bxb_runtime":
                parts = name.split(".")
                # The module and every package on its way (Python runs each __init__).
                todo += [p for i in range(1, len(parts) + 1) if (p := _module_path(".".join(parts[:i])))]
                # ``from bxb_runtime.x import y`` may name a submodule y.
                todo += [p for alias in _aliases(path, name) if (p := _module_path(f"{name}.{alias}"))]
            elif top not in sys.stdlib_module_names and top != "__future__":
                packages.add(top)
    return packages


def _aliases(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text())
    return [a.name for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == module for a in n.names]


@pytest.mark.parametrize("function", sorted(WHEELS))
def test_each_handler_loads_only_its_own_bundle(function: str):
    loaded = loaded_at_import(REPO / "lambdas" / function / "handler.py")
    assert loaded <= WHEELS[function], sorted(loaded - WHEELS[function])
    assert "msgspec" in loaded  # reached only through bxb_runtime: the walk follows it


def test_the_check_sees_an_upward_import(tmp_path: Path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from bxb_stream.local import relay\n    import pyarrow\n")
    assert (2, "bxb_stream.local") in imported(bad)
    assert imported(bad, module_level_only=True) == []  # both are inside the function
