"""Lambda assets built without Docker.

An asset is ``lambdas/<function>/`` + the ``bxb_runtime`` package (the only project code a
Lambda runs; the ``bxb_stream`` tooling stays out) + third-party
wheels for Lambda's arm64 / Python 3.12, installed by ``pip --platform`` into the
bundle directory. CDK calls ``try_bundle`` first; it never falls back to Docker
here because a failure raises with pip's output.

The asset hash is computed from the files that go in (and the dependency and
platform spec), so editing ``bxb_runtime`` redeploys both functions, and skipping
bundling (context ``aws:cdk:bundling-stacks`` = ``[]``, as the tests do) keeps
the same hash.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "bxb_runtime"
PYTHON_VERSION = "3.12"
# Lambda's Python 3.12 runs on Amazon Linux 2023 (glibc 2.34): manylinux_2_28 wheels fit (pyarrow ships only those).
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
_SKIP = ("__pycache__", "*.pyc", "*.pyo", ".pytest_cache")


def pinned(*names: str, requirements: Path = REPO_ROOT / "requirements.txt") -> tuple[str, ...]:
    """``name==version`` for each name, from requirements.txt: the Lambda gets what the tests ran with."""
    pins = {}
    for line in requirements.read_text().splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            pins[name.strip().lower()] = f"{name.strip()}=={version.strip()}"
    missing = [n for n in names if n.lower() not in pins]
    if missing:
        raise ValueError(f"{requirements.name} pins no version for {missing}")
    return tuple(pins[n.lower()] for n in names)


def pip_command(target: str, requirements: Sequence[str], python: str = sys.executable) -> list[str]:
    """The pip call that fetches Lambda-compatible (arm64, CPython 3.12) wheels only."""
    return [
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        *(arg for platform in PLATFORMS for arg in ("--platform", platform)),
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
        "--only-binary=:all:",
        "--target",
        target,
        *requirements,
    ]


def _source_files(root: Path, function_dir: str) -> Iterable[Path]:
    for base in (root / function_dir, root / PACKAGE):
        for path in sorted(base.rglob("*")):
            if path.is_file() and not any(path.match(p) or p in path.parts for p in _SKIP):
                yield path


def asset_fingerprint(root: Path, function_dir: str, requirements: Sequence[str]) -> str:
    """sha256 over the files copied into the asset and the dependency/platform spec."""
    digest = hashlib.sha256()
    digest.update(f"{'|'.join(PLATFORMS)}|{PYTHON_VERSION}|{'|'.join(requirements)}".encode())
    for path in _source_files(root, function_dir):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@jsii.implements(ILocalBundling)
class LocalPythonBundler:
    """Copies the handler and ``bxb_runtime`` into the bundle, then pip-installs wheels for arm64."""

    def __init__(self, root: Path, function_dir: str, requirements: Sequence[str]) -> None:
        self.root = root
        self.function_dir = function_dir
        self.requirements = tuple(requirements)

    def try_bundle(self, output_dir: str, *, image: DockerImage | None = None, **_options: object) -> bool:
        out = Path(output_dir)
        if not (self.root / self.function_dir / "handler.py").is_file():
            raise FileNotFoundError(f"{self.function_dir}/handler.py is missing: nothing to deploy")
        ignore = shutil.ignore_patterns(*_SKIP)
        shutil.copytree(self.root / self.function_dir, out / self.function_dir, ignore=ignore, dirs_exist_ok=True)
        shutil.copytree(self.root / PACKAGE, out / PACKAGE, ignore=ignore, dirs_exist_ok=True)
        if self.requirements:
            done = subprocess.run(pip_command(str(out), self.requirements), capture_output=True, text=True, check=False)
            if done.returncode != 0:
                # Raise rather than return False: False would make CDK try Docker, which is not available.
                platforms = ", ".join(PLATFORMS)
                raise RuntimeError(f"pip could not fetch {self.requirements} for {platforms}: {done.stderr[-2000:]}")
        return True


def python_code(function_dir: str, requirements: Sequence[str], root: Path = REPO_ROOT) -> lambda_.Code:
    """Lambda code for ``<function_dir>`` (handler path ``<function_dir>/handler.handler``)."""
    return lambda_.Code.from_asset(
        # Only the asset's identity: the bundler copies <function_dir> and bxb_runtime itself. The parent
        # directory keeps synth working while a function's handler is still being written.
        str((root / function_dir).parent),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=asset_fingerprint(root, function_dir, requirements),
        bundling=BundlingOptions(
            # Never pulled: local bundling always succeeds or raises.
            image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.12"),
            local=LocalPythonBundler(root, function_dir, requirements),
        ),
    )
