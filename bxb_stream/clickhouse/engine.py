"""The embedded ClickHouse engine (chDB) for local runs and tests, with S3Queue working.

Use ``start(data_dir)``; it is idempotent per process::

    from bxb_stream.clickhouse import engine
    eng = engine.start("/tmp/bxb-ch")      # before anything imports chdb
    client = eng.client()                  # a clickhouse-connect client, in-process
    eng.url                                # "chdb:///tmp/bxb-ch", for clickhouse_connect.get_client(dsn=...)

Why it is more than ``chdb.connect``:

- S3Queue needs a Keeper: the engine starts with a config file (``config.xml`` in the data
  dir) that selects the in-process ``testkeeper``. Keeper state lives in memory, so after a
  restart S3Queue forgets what it processed and reads the bucket again; events_raw
  deduplicates those rows.
- ``import chdb`` opens and closes a throw-away ``:memory:`` engine to read its version, and
  closing an engine marks S3Queue's factory shut down for the life of the process ("Shutdown
  was called"). So ``start`` loads chdb's extension itself, opens our engine first, points
  that import-time probe at our engine (whose connection then stays open), and only then
  imports chdb. Our connection is held until exit, when an atexit hook closes it (an open
  engine with running queues would otherwise block interpreter exit).
- chDB hosts one engine per process, bound to one path: a second ``start`` with another
  directory raises ``EngineError``.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

_KEEPER_CONFIG = """<clickhouse>
    <!-- S3Queue keeps its processed-file state in Keeper; testkeeper is ClickHouse's in-process one. -->
    <zookeeper><implementation>testkeeper</implementation></zookeeper>
</clickhouse>
"""
_RTLD_DEEPBIND = 0x8  # chdb's own loader uses it so the bundled ClickHouse symbols win


class EngineError(RuntimeError):
    """The embedded engine cannot start as asked."""


@dataclass
class Engine:
    """The process's embedded engine. Keep using it; never close it yourself."""

    data_dir: Path
    _connection: Any = field(repr=False)

    @property
    def url(self) -> str:
        return f"chdb://{self.data_dir}"

    def client(self, **settings: Any) -> Any:
        """A new clickhouse-connect client on this engine (each has its own session)."""
        import clickhouse_connect

        return clickhouse_connect.get_client(dsn=self.url, settings=settings or None)


_lock = threading.Lock()
_engine: Engine | None = None


def current() -> Engine | None:
    """The running engine, if ``start`` was called in this process."""
    return _engine


def start(data_dir: str | os.PathLike[str]) -> Engine:
    """Start the process's engine on ``data_dir`` (created if missing), or return the running one."""
    global _engine
    path = Path(os.path.realpath(data_dir))  # chdb compares paths literally
    with _lock:
        if _engine is not None:
            if _engine.data_dir != path:
                raise EngineError(
                    f"the embedded engine already runs on {_engine.data_dir}; chDB allows one engine per process, "
                    f"so it cannot also open {path}"
                )
            return _engine
        if "chdb" in sys.modules:
            raise EngineError(
                "chdb was imported before bxb_stream.clickhouse.engine.start(); its import-time probe has shut "
                "S3Queue down for this process. Call engine.start() before anything imports chdb (for example "
                "before clickhouse_connect.get_client('chdb://...'))."
            )
        path.mkdir(parents=True, exist_ok=True)
        config = path / "config.xml"
        config.write_text(_KEEPER_CONFIG)
        ext = _load_extension()
        try:
            connection = ext.connect(f"{path}?config-file={config}")
        except RuntimeError as exc:
            raise EngineError(f"cannot start the embedded engine on {path}: {exc}") from exc
        _import_chdb_against(ext, str(path))
        atexit.register(connection.close)
        _engine = Engine(path, connection)
        return _engine


def _load_extension() -> ModuleType:
    """Load ``chdb._chdb`` without running ``chdb/__init__`` (and so without its probe)."""
    spec = importlib.util.find_spec("chdb")  # a top-level spec is found without importing it
    if spec is None or not spec.submodule_search_locations:
        raise EngineError("the chdb package is not installed (pip install chdb)")
    for directory in spec.submodule_search_locations:
        so = Path(directory) / "_chdb.abi3.so"
        if so.exists():
            break
    else:
        raise EngineError(f"chdb's _chdb.abi3.so not found in {list(spec.submodule_search_locations)}")
    if sys.platform == "linux":
        ctypes.CDLL(str(so), mode=sys.getdlopenflags() | _RTLD_DEEPBIND)
    ext_spec = importlib.util.spec_from_file_location("chdb._chdb", so)
    assert ext_spec is not None and ext_spec.loader is not None
    module = importlib.util.module_from_spec(ext_spec)
    cwd = os.getcwd()
    os.chdir(so.parent)  # as chdb's __init__ does: the extension finds its helper libraries from here
    try:
        ext_spec.loader.exec_module(module)
    finally:
        os.chdir(cwd)
    sys.modules["chdb._chdb"] = module  # chdb's `from . import _chdb` now finds it
    return module


def _import_chdb_against(ext: ModuleType, path: str) -> None:
    """Import chdb with its no-argument probe ``_chdb.connect()`` redirected to our engine."""
    real_connect = ext.connect

    def connect(connection_string: str = ":memory:") -> Any:
        return real_connect(path if connection_string in ("", ":memory:") else connection_string)

    ext.connect = connect
    try:
        import chdb  # noqa: F401
    finally:
        ext.connect = real_connect
