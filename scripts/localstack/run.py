"""``make test-localstack``: the local pipeline against a real LocalStack, started and stopped here.

1. Finds a Python >= 3.13 (``LOCALSTACK_PYTHON``, then PATH, then pyenv's versions) and installs
   the pinned LocalStack (``requirements.txt`` beside this file) into its own virtualenv under
   ``.bxb/localstack/``; its Kinesis engine, npm ``kinesis-local``, from ``kinesis-local/``'s lock.
   Both are reinstalled only when their pins change.
2. Starts LocalStack in host mode (no Docker) on 127.0.0.1:4566, or a free port if that is taken,
   in its own process group, and waits (bounded) until Kinesis, S3 and Secrets Manager are up.
3. Runs ``bxb-stream local --endpoint-url ... --path both`` (exact reconciliation per path, and
   nothing may be left under events/ afterwards), then ``tests/localstack/localstack_route.py``.
4. Stops LocalStack by its process group (its PID) whatever happened: an error, Ctrl-C, SIGTERM.

Run it with the project's virtualenv (``make test-localstack`` does). Exits non-zero on any failure,
with one line saying which step failed; timings of each step are printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
STATE = ROOT / ".bxb" / "localstack"  # .bxb/ is git-ignored
VENV = STATE / "venv"
FILESYSTEM = STATE / "filesystem"  # LocalStack's FILESYSTEM_ROOT in host mode
REQUIREMENTS = HERE / "requirements.txt"
KINESIS_LOCK = HERE / "kinesis-local"
ROUTE_TESTS = ROOT / "tests" / "localstack" / "localstack_route.py"

MIN_PYTHON = (3, 13)
DEFAULT_PORT = 4566
SERVICES = ("kinesis", "s3", "secretsmanager")
HEALTH_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
INSTALL_TIMEOUT_S = 900.0
RUN_TIMEOUT_S = 600.0  # each of the CLI run and the pytest run


class StepFailed(Exception):
    """One step failed; the message is the one line printed."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000, help="events for the bxb-stream local run (default 5000)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="LocalStack's port, if free (default 4566)")
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # as a trap would: run the finally blocks, then exit
        signal.signal(sig, _exit_on_signal)

    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        with _timed(timings, "install"):
            python = find_python()
            venv_python = install_localstack(python)
            kinesis_version = install_kinesis_local()
        failures: list[str] = []
        with localstack(venv_python, kinesis_version, args.port, timings) as endpoint:
            checks = {
                "bxb-stream local": lambda: run_cli(endpoint, args.events),
                "pytest": lambda: run_route_tests(endpoint),
            }
            for name, check in checks.items():
                with _timed(timings, name):
                    try:
                        check()
                    except StepFailed as exc:  # the other check still runs
                        failures.append(str(exc))
        if failures:
            raise StepFailed("; ".join(failures))
    except StepFailed as exc:
        print(f"test-localstack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("test-localstack: interrupted", file=sys.stderr)
        return 130
    finally:
        timings["total"] = time.monotonic() - started
        print("test-localstack timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()), flush=True)
    print("test-localstack: passed")
    return 0


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        timings[name] = time.monotonic() - start


# ---------------------------------------------------------------------------------------- install
def find_python() -> Path:
    """The first Python >= 3.13 that can make a virtualenv: LOCALSTACK_PYTHON, PATH, then pyenv."""
    candidates: list[str] = []
    if os.environ.get("LOCALSTACK_PYTHON"):
        candidates.append(os.environ["LOCALSTACK_PYTHON"])
    for minor in range(MIN_PYTHON[1], MIN_PYTHON[1] + 4):
        candidates.append(f"python3.{minor}")
    candidates.append("python3")
    candidates += _pyenv_pythons()
    for candidate in candidates:
        path = shutil.which(candidate) or (candidate if os.path.isfile(candidate) else None)
        if path and _is_usable(path):
            return Path(path)
    wanted = ".".join(map(str, MIN_PYTHON))
    raise StepFailed(
        f"no Python >= {wanted} found (LocalStack needs it; looked at LOCALSTACK_PYTHON, python3.x and python3 on "
        f"PATH, and pyenv's versions): install one (e.g. `pyenv install {wanted}`) or set LOCALSTACK_PYTHON"
    )


def _pyenv_pythons() -> list[str]:
    """pyenv's installed CPythons >= 3.13, oldest first (the pins were made on 3.13)."""
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    found = []
    for entry in Path(root, "versions").glob("3.*"):
        match = re.fullmatch(r"3\.(\d+)\.(\d+)", entry.name)
        if match and (3, int(match[1])) >= MIN_PYTHON:
            found.append(((int(match[1]), int(match[2])), str(entry / "bin" / "python3")))
    return [path for _, path in sorted(found)]


def _is_usable(python: str) -> bool:
    """Runs, is new enough and has venv (a pyenv shim for an unselected version fails to run)."""
    check = f"import sys, venv; sys.exit(0 if sys.version_info[:2] >= {MIN_PYTHON!r} else 1)"
    try:
        return subprocess.run([python, "-c", check], capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def install_localstack(python: Path) -> Path:
    """LocalStack's virtualenv, (re)made when the pins or the interpreter changed."""
    venv_python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    version = subprocess.run(
        [str(python), "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes() + version.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted and venv_python.exists():
        print(f"LocalStack virtualenv up to date ({VENV.relative_to(ROOT)}, Python {version.split()[0]})")
        return venv_python
    print(f"installing LocalStack into {VENV.relative_to(ROOT)} with Python {version.split()[0]} ({python})")
    shutil.rmtree(VENV, ignore_errors=True)
    STATE.mkdir(parents=True, exist_ok=True)
    log = STATE / "install.log"
    _run_logged([str(python), "-m", "venv", str(VENV)], log, "creating LocalStack's virtualenv")
    _run_logged(
        [str(venv_python), "-m", "pip", "install", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
        log,
        "installing LocalStack's pinned requirements",
    )
    stamp.write_text(wanted)
    return venv_python


def install_kinesis_local() -> str:
    """npm ``kinesis-local`` where LocalStack looks for it (its static libs), from the lock; its version."""
    version = json.loads((KINESIS_LOCK / "package.json").read_text())["dependencies"]["kinesis-local"]
    target = FILESYSTEM / "usr" / "lib" / "localstack" / "kinesis-local" / version
    marker = target / "node_modules" / "kinesis-local" / "main.js"
    lock = (KINESIS_LOCK / "package-lock.json").read_bytes()
    if (
        marker.exists()
        and (target / "package-lock.json").exists()
        and (target / "package-lock.json").read_bytes() == lock
    ):
        return version
    if shutil.which("npm") is None:
        raise StepFailed("npm not found: LocalStack's Kinesis runs on the npm package kinesis-local (install Node 20)")
    print(f"installing kinesis-local {version} (npm) for LocalStack's Kinesis")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(KINESIS_LOCK / name, target / name)
    _run_logged(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(target)],
        STATE / "install.log",
        "installing kinesis-local from npm",
    )
    return version


def _run_logged(command: list[str], log: Path, what: str) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        try:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise StepFailed(f"{what} took over {INSTALL_TIMEOUT_S:.0f}s; see {log}") from None
    if done.returncode != 0:
        raise StepFailed(f"{what} failed (exit {done.returncode}); see {log}")


# ------------------------------------------------------------------------------------- LocalStack
def free_port(preferred: int) -> int:
    """``preferred`` if nothing listens on 127.0.0.1 there, else a free port the kernel picks."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise StepFailed("no free TCP port on 127.0.0.1")


@contextlib.contextmanager
def localstack(
    venv_python: Path, kinesis_version: str, preferred_port: int, timings: dict[str, float]
) -> Iterator[str]:
    """LocalStack in host mode, healthy; stopped by its process group on the way out, whatever happened."""
    port = free_port(preferred_port)
    shutil.rmtree(FILESYSTEM / "tmp", ignore_errors=True)  # a previous run's state (kinesis-local stays)
    log_path = STATE / "localstack.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "LOCALSTACK_"))},
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "DISABLE_EVENTS": "1",  # no analytics calls home
        "SKIP_SSL_CERT_DOWNLOAD": "1",  # plain HTTP on loopback; no certificate download
        "DNS_ADDRESS": "0",  # no DNS server (it would want port 53)
        # Host mode's directories under FILESYSTEM_ROOT even where this machine is itself a container
        # (LocalStack would otherwise take it for its own and write to /var/lib/localstack, /etc/localstack).
        "OVERRIDE_IN_DOCKER": "0",
        "FILESYSTEM_ROOT": str(FILESYSTEM),
        "KINESIS_MOCK_VERSION": kinesis_version,  # the one installed above
    }
    endpoint = f"http://127.0.0.1:{port}"
    print(f"starting LocalStack on {endpoint} (log: {log_path.relative_to(ROOT)})", flush=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(venv_python), "-m", "localstack.runtime.main"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=STATE,
            start_new_session=True,  # its own process group, so its children (kinesis-local) stop with it
        )
        try:
            start = time.monotonic()
            _wait_healthy(endpoint, process, log_path)
            timings["LocalStack healthy"] = time.monotonic() - start
            print(f"LocalStack {endpoint} healthy after {timings['LocalStack healthy']:.1f}s (pid {process.pid})")
            yield endpoint
        finally:
            _stop(process)


def _wait_healthy(endpoint: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    last = "no answer"
    for _ in range(int(HEALTH_TIMEOUT_S / 0.5) + 1):
        if process.poll() is not None:
            raise StepFailed(f"LocalStack exited with {process.returncode} while starting: {_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=2) as answer:
                services = json.load(answer).get("services", {})
            states = {name: services.get(name, "missing") for name in SERVICES}
            if all(state in ("available", "running") for state in states.values()):
                return
            last = ", ".join(f"{k} {v}" for k, v in states.items())
        except (OSError, ValueError) as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    raise StepFailed(f"LocalStack was not healthy within {HEALTH_TIMEOUT_S:.0f}s ({last}); see {log_path}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to LocalStack's process group (its PID), SIGKILL if it has not exited in time; then
    SIGKILL to any process it started that outlived it (kinesis-local runs in a session of its own)."""
    below = _descendants(process.pid)
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for pid, started in below:
        if _start_time(pid) == started:  # still that process, not a new one with a reused PID
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    print(f"LocalStack stopped (pid {process.pid}, exit {process.returncode})")


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(PID, start time) of every process below ``pid``, from /proc (empty where there is none)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
    found: list[tuple[int, str]] = []
    pending = [pid]
    for _ in range(10_000):  # bounded walk down the tree
        if not pending:
            break
        for child in children.get(pending.pop(), []):
            started = _start_time(child)
            if started:
                found.append((child, started))
                pending.append(child)
    return found


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), "" if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _tail(path: Path, lines: int = 5) -> str:
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


# ------------------------------------------------------------------------------------------ checks
def run_cli(endpoint: str, events: int) -> None:
    """The README's command; then nothing may remain under events/ for a queue to read again."""
    command = [
        sys.executable, "-m", "bxb_stream", "local", "--endpoint-url", endpoint, "--path", "both",
        "--events", str(events), "--data-dir", str(STATE / "local"), "--timeout", "300",
    ]  # fmt: skip
    print("$ bxb-stream " + " ".join(command[3:]), flush=True)
    _run(command, "bxb-stream local")
    from bxb_runtime.layout import EVENTS_PREFIX
    from bxb_stream.deployment import PipelineConfig

    bucket = f"{PipelineConfig.from_cdk_json(ROOT / 'cdk.json').name}-archive"  # as bxb-stream local names it
    left = _keys_under(endpoint, bucket, EVENTS_PREFIX)
    if left:
        raise StepFailed(f"bxb-stream local left {left} object(s) under events/ on LocalStack (would be read again)")
    print("bxb-stream local: reconciled; nothing left under events/")


def _keys_under(endpoint: str, bucket: str, prefix: str) -> int:
    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    return sum(
        page.get("KeyCount", 0) for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    )


def run_route_tests(endpoint: str) -> None:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--durations=3",
        str(ROUTE_TESTS.relative_to(ROOT)),
    ]
    print("$ " + " ".join(command[2:]), flush=True)
    _run(command, "tests/localstack", extra_env={"BXB_LOCALSTACK_ENDPOINT": endpoint})


def _run(command: list[str], what: str, extra_env: dict[str, str] | None = None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    try:
        done = subprocess.run(command, cwd=ROOT, env={**env, **(extra_env or {})}, timeout=RUN_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise StepFailed(f"{what} took over {RUN_TIMEOUT_S:.0f}s") from None
    if done.returncode != 0:
        raise StepFailed(f"{what} failed (exit {done.returncode})")


if __name__ == "__main__":
    sys.exit(main())
