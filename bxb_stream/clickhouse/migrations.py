"""Apply the rendered schema once: ``<database>.schema_migrations`` records what ran.

A migration runs only if its version is not recorded; a second ``apply`` changes nothing.
Each migration's checksum (of its rendered SQL) is recorded too, and ``apply`` refuses to run
when a recorded migration no longer renders the same (settings such as the bucket or the
queue tuning changed): existing tables are never altered behind the operator's back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bxb_runtime.clickhouse import tables as t
from bxb_runtime.events import schema
from bxb_stream.clickhouse.ddl import (
    SCHEMA_MIGRATIONS,
    Migration,
    create_database,
    migrations,
    migrations_table,
    quote,
)
from bxb_stream.clickhouse.settings import ClickHouseSettings, CredentialsMode

log = logging.getLogger(__name__)


class MigrationError(RuntimeError):
    pass


@dataclass
class ApplyResult:
    applied: list[Migration] = field(default_factory=list)
    already: list[Migration] = field(default_factory=list)


def applied_versions(client: Any, database: str) -> dict[int, str]:
    """version -> checksum of every recorded migration."""
    rows = client.query(f"SELECT version, checksum FROM {database}.{t.MIGRATIONS} FINAL").result_rows
    return {int(v): str(c) for v, c in rows}


def apply(
    client: Any,
    settings: ClickHouseSettings,
    fields: Sequence[schema.Field] = schema.FIELDS,
    schema_migrations: Sequence[tuple[int, int]] = SCHEMA_MIGRATIONS,
) -> ApplyResult:
    """Create the database and run every migration not yet recorded, in order."""
    db = settings.database
    client.command(create_database(settings))
    client.command(migrations_table(settings))
    done = applied_versions(client, db)
    wanted = migrations(settings, fields, schema_migrations)
    drifted = [m for m in wanted if m.version in done and done[m.version] != m.checksum]
    if drifted:
        names = ", ".join(f"{m.version:04d} {m.name!r}" for m in drifted)
        raise MigrationError(
            f"database {db}: migration(s) {names} were applied from different SQL than these settings render "
            "(bucket, prefixes, credentials or queue settings changed). Existing objects are not altered; "
            "add a new migration or recreate the database."
        )
    result = ApplyResult()
    for m in wanted:
        if m.version in done:
            result.already.append(m)
            continue
        log.info("applying migration %04d %s to %s", m.version, m.name, db)
        for statement in m.statements:
            client.command(statement)
        client.command(
            f"INSERT INTO {db}.{t.MIGRATIONS} (version, name, checksum) "
            f"VALUES ({m.version}, {quote(m.name)}, {quote(m.checksum)})"
        )
        result.applied.append(m)
    return result


def ensure_named_collection_from_env(
    client: Any, settings: ClickHouseSettings, environ: Mapping[str, str] | None = None
) -> None:
    """Create or update the settings' named collection from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    (and AWS_SESSION_TOKEN when set). The keys go to the server only; nothing is logged or rendered.
    """
    if settings.credentials_mode is not CredentialsMode.NAMED_COLLECTION:
        raise MigrationError("the settings use role-based access; there is no named collection to create")
    environ = os.environ if environ is None else environ
    missing = [k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not environ.get(k)]
    if missing:
        raise MigrationError(f"cannot create named collection {settings.named_collection}: {', '.join(missing)} unset")
    pairs = {"access_key_id": environ["AWS_ACCESS_KEY_ID"], "secret_access_key": environ["AWS_SECRET_ACCESS_KEY"]}
    if environ.get("AWS_SESSION_TOKEN"):
        pairs["session_token"] = environ["AWS_SESSION_TOKEN"]
    body = ", ".join(f"{k} = {quote(v)}" for k, v in pairs.items())
    name = settings.named_collection
    try:
        client.command(f"CREATE NAMED COLLECTION IF NOT EXISTS {name} AS {body}")
        client.command(f"ALTER NAMED COLLECTION {name} SET {body}")  # rotated keys replace the old ones
    except Exception as exc:
        message = str(exc)
        for secret in pairs.values():  # an error may echo the statement
            message = message.replace(secret, "***")
        raise MigrationError(f"cannot create named collection {name}: {message}") from None
    log.info("named collection %s holds the S3 keys from the environment", name)
