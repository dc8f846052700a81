"""Lambda assets built without Docker.

An asset is ``lambdas/<function>/`` + the ``bxb_runtime`` package (the only project code a
Lambda runs; the ``bxb_stream`` tooling stays out) + third-party
wheels for Lambda's arm64 / Python 3.12, installed by ``pip --platform`` into the
bundle directory. CDK calls ``try_bundle`` first; it never falls back to Docker
here because a failure raises with pip's output.

The bundle ships its bytecode: Lambda's task directory is read-only, so without it every
cold start compiles each module it imports (the ingest's cold import measured 387-392 ms
against 227-247 with it, bench/http_ingest.py). It is compiled by a Python 3.12 (this one, or
``python3.12`` on PATH) as ``checked-hash`` pycs: valid whatever the zip does to file times
(a timestamp pyc would not be), and never used for a source that differs from the one compiled
(a function edited in the Lambda console runs its edit); checking costs 2-5 ms a cold start.

The asset hash is computed from the files that go in (and the dependency and
platform spec), so editing ``bxb_runtime`` redeploys both functions, and skipping
bundling (context ``aws:cdk:bundling-stacks`` = ``[]``, as the tests do) keeps
the same hash.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "bxb_runtime"
PYTHON_VERSION = "3.12"
BYTECODE = "checked-hash"  # compileall's --invalidation-mode
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


def pip_command(
    target: str, requirements: Sequence[str], python: str = sys.executable, platforms: Sequence[str] = PLATFORMS
) -> list[str]:
    """The pip call that fetches Lambda-compatible (arm64, CPython 3.12) wheels only; with no
    ``platforms``, wheels for ``python`` itself (the bench's stand-in bundle for this machine)."""
    wheels = [
        *(arg for platform in platforms for arg in ("--platform", platform)),
        *("--implementation", "cp", "--python-version", PYTHON_VERSION, "--only-binary=:all:"),
    ]
    return [
        python,
        *("-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"),
        *(wheels if platforms else ()),
        *("--target", target, *requirements),
    ]


@functools.cache
def bytecode_python(executable: str = sys.executable, version: tuple[int, int] = sys.version_info[:2]) -> str | None:
    """A Python whose bytecode the Lambda runtime loads: ``executable`` if it is 3.12, else a python3.12
    on PATH that runs (a pyenv shim may exist without its version being active)."""
    if ".".join(map(str, version)) == PYTHON_VERSION:
        return executable
    found = shutil.which(f"python{PYTHON_VERSION}")
    if found is None:
        return None
    probe = [found, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
    done = subprocess.run(probe, capture_output=True, text=True, check=False, timeout=30)
    return found if done.returncode == 0 and done.stdout.strip() == PYTHON_VERSION else None


def compile_bytecode(root: Path, python: str | None) -> None:
    """Every module under ``root`` compiled for the runtime (``__pycache__/*.cpython-312.pyc``)."""
    if python is None:
        warnings.warn(
            f"no Python {PYTHON_VERSION} found: the bundle ships without bytecode, and every Lambda cold start "
            "compiles the modules it imports (about 150 ms more for the ingest)",
            stacklevel=2,
        )
        return
    command = [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", BYTECODE, str(root)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"compileall failed in {root}: {(done.stdout + done.stderr)[-2000:]}")


def _source_files(root: Path, function_dir: str) -> Iterable[Path]:
    for base in (root / function_dir, root / PACKAGE):
        for path in sorted(base.rglob("*")):
            if path.is_file() and not any(path.match(p) or p in path.parts for p in _SKIP):
                yield path


def asset_fingerprint(root: Path, function_dir: str, requirements: Sequence[str]) -> str:
    """sha256 over the files copied into the asset and the dependency/platform spec."""
    digest = hashlib.sha256()
    bytecode = BYTECODE if bytecode_python() else "no bytecode"
    digest.update(f"{'|'.join(PLATFORMS)}|{PYTHON_VERSION}|{bytecode}|{'|'.join(requirements)}".encode())
    for path in _source_files(root, function_dir):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@jsii.implements(ILocalBundling)
class LocalPythonBundler:
    """Copies the handler and ``bxb_runtime`` into the bundle, pip-installs wheels for arm64 (``platforms``),
    then compiles the bytecode."""

    def __init__(
        self, root: Path, function_dir: str, requirements: Sequence[str], platforms: Sequence[str] = PLATFORMS
    ) -> None:
        self.root = root
        self.function_dir = function_dir
        self.requirements = tuple(requirements)
        self.platforms = tuple(platforms)

    def try_bundle(self, output_dir: str, *, image: DockerImage | None = None, **_options: object) -> bool:
        out = Path(output_dir)
        if not (self.root / self.function_dir / "handler.py").is_file():
            raise FileNotFoundError(f"{self.function_dir}/handler.py is missing: nothing to deploy")
        ignore = shutil.ignore_patterns(*_SKIP)
        shutil.copytree(self.root / self.function_dir, out / self.function_dir, ignore=ignore, dirs_exist_ok=True)
        shutil.copytree(self.root / PACKAGE, out / PACKAGE, ignore=ignore, dirs_exist_ok=True)
        if self.requirements:
            pip = pip_command(str(out), self.requirements, platforms=self.platforms)
            done = subprocess.run(pip, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                # Raise rather than return False: False would make CDK try Docker, which is not available.
                platforms = ", ".join(self.platforms) or "this machine"
                raise RuntimeError(f"pip could not fetch {self.requirements} for {platforms}: {done.stderr[-2000:]}")
        compile_bytecode(out, bytecode_python())
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
