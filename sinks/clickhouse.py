"""One ClickHouse store for the embedded engine (chDB) and servers, behind one small API.

Every call runs on a single worker thread, off the event loop (chDB allows one
engine per process and its client is not thread-safe). Writes retry with
backoff while ClickHouse is unreachable, so no row is dropped: the caller awaits
the write, which is what pauses consumption (backpressure) during an outage.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import clickhouse_connect
import orjson
from clickhouse_connect.driver.client import Client

from sinks.schema import columns, create_statements

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_DATABASE = "monitoring"
_JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_SERIALIZE_NUMPY


def _json_default(value: Any) -> Any:
    """Datetimes as epoch seconds, the form ClickHouse reads into DateTime64 exactly."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return round(value.timestamp(), 6)
    raise TypeError(f"cannot write {type(value).__name__} to ClickHouse")


@dataclass(frozen=True)
class Target:
    """Where the store lives: an embedded chDB path (or memory) or an HTTP(S) server."""

    kind: str  # "chdb" | "http"
    dsn: str
    database: str
    host: str = ""
    port: int = 0
    username: str = "default"
    password: str = ""
    secure: bool = False

    @property
    def embedded_path(self) -> str | None:
        if self.kind != "chdb" or self.dsn == "chdb://memory":
            return None
        return self.dsn[len("chdb://"):]

    def describe(self) -> str:
        if self.kind == "chdb":
            return f"embedded ClickHouse at {self.embedded_path or 'memory'} (database {self.database})"
        return f"ClickHouse {'https' if self.secure else 'http'}://{self.host}:{self.port} (database {self.database})"


def parse_target(url: str) -> Target:
    """Read CLICKHOUSE_URL (already validated by the settings module)."""
    if url.startswith("chdb://"):
        return Target("chdb", url, DEFAULT_DATABASE)
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    return Target(
        kind="http",
        dsn=url,
        database=parts.path.strip("/") or DEFAULT_DATABASE,
        host=parts.hostname or "localhost",
        port=parts.port or (8443 if secure else 8123),
        username=unquote(parts.username or "default"),
        password=unquote(parts.password or ""),
        secure=secure,
    )


def open_client(target: Target, *, readonly: bool = False) -> Client:
    """A new client (its own session). Read-only clients refuse writes and DDL."""
    if target.kind == "chdb":
        if target.embedded_path:
            Path(target.embedded_path).mkdir(parents=True, exist_ok=True)
        client = clickhouse_connect.get_client(dsn=target.dsn)
        if readonly:
            # A session-wide setting on a session of its own: per-query settings in the
            # embedded engine are applied with SET and could leak into the writer.
            client.command("SET readonly = 1")
        return client
    return clickhouse_connect.get_client(
        host=target.host,
        port=target.port,
        username=target.username,
        password=target.password,
        secure=target.secure,
        database=None,
        settings={"readonly": 1} if readonly else None,
        connect_timeout=5,
        send_receive_timeout=60,
    )


class ClickHouseStore:
    """The monitor's tables: created on start, written with retries, queried for figures."""

    def __init__(
        self,
        target: Target,
        *,
        retry_initial: float = 0.5,
        retry_max: float = 10.0,
        on_outage: Callable[[bool, str], None] | None = None,
    ) -> None:
        self.target = target
        self.database = target.database
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self._client: Client | None = None
        self._reader: Client | None = None
        self._reader_lock = threading.Lock()
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.on_outage = on_outage
        self.failures = 0
        self.rows_written: dict[str, int] = {}
        self.rows_pending = 0  # handed to insert() but not yet accepted by ClickHouse
        self.outage_since: float | None = None  # monotonic time the current outage began
        self.recovered_at = 0.0  # monotonic time the last outage ended
        self.unavailable_until = 0.0  # monotonic; until then every call fails as if ClickHouse were down (tests)

    # -- plumbing -------------------------------------------------------------
    async def _call(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)

    async def _with_retry(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` until ClickHouse accepts it. One warning per outage, however many calls
        are waiting on it, and one line when the first of them gets through."""
        delay = self.retry_initial
        failed = False
        while True:
            try:
                self._check_available()
                result = await self._call(fn)
            except Exception as err:  # noqa: BLE001 - any failure is retried; rows stay held
                self.failures += 1
                failed = True
                if self.outage_since is None:
                    self.outage_since = time.monotonic()
                    log.warning("ClickHouse unavailable during %s (%s): holding rows and retrying", what,
                                str(err).splitlines()[0][:200])
                    if self.on_outage:
                        self.on_outage(True, str(err))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            if failed and self.outage_since is not None:
                self.recovered_at = time.monotonic()
                log.warning("ClickHouse is back after %.1f s: %s resumed", self.recovered_at - self.outage_since, what)
                self.outage_since = None
                if self.on_outage:
                    self.on_outage(False, "")
            return result

    def _check_available(self) -> None:
        if self.unavailable_until > time.monotonic():
            raise ConnectionError("ClickHouse unavailable (simulated outage)")

    def _writer(self) -> Client:
        if self._client is None:
            self._client = open_client(self.target)
        return self._client

    # -- API ------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and create the database and tables if missing."""

        def create() -> None:
            client = self._writer()
            for statement in create_statements(self.database):
                client.command(statement)

        await self._with_retry("schema creation", create)
        log.info("Writing figures to %s", self.target.describe())

    async def insert(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows (in the table's column order); retried until ClickHouse accepts them.

        Rows travel as JSONCompactEachRow built by orjson: the engine parses them in C++
        without the GIL, where the driver's row-by-row Native encoding holds it. Time
        values are epoch seconds (float) or datetimes.
        """
        if not rows:
            return
        names = columns(table)

        def write() -> None:
            body = b"\n".join([orjson.dumps(row, default=_json_default, option=_JSON_OPTIONS) for row in rows])
            self._writer().raw_insert(f"`{self.database}`.`{table}`", names, body, fmt="JSONCompactEachRow")

        self.rows_pending += len(rows)
        try:
            await self._with_retry(f"insert into {table}", write)
        finally:
            self.rows_pending -= len(rows)
        self.rows_written[table] = self.rows_written.get(table, 0) + len(rows)

    async def query(self, sql: str) -> list[tuple[Any, ...]]:
        """A query of the monitor's own (retried like writes)."""
        return await self._with_retry("query", lambda: self._writer().query(sql).result_rows)

    def readonly_query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """A user's query, in a session of its own that ClickHouse keeps read-only."""
        self._check_available()
        with self._reader_lock:
            if self._reader is None:
                self._reader = open_client(self.target, readonly=True)
            result = self._reader.query(sql)
            return list(result.column_names), list(result.result_rows)

    async def readonly_query_async(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        return await self._call(lambda: self.readonly_query(sql))

    async def close(self) -> None:
        def shutdown() -> None:
            for client in (self._reader, self._client):
                if client is not None:
                    try:
                        client.close()
                    except Exception:  # noqa: BLE001 - closing is best effort
                        log.debug("closing a ClickHouse client failed", exc_info=True)
            self._reader = self._client = None

        await self._call(shutdown)
        self._executor.shutdown(wait=True)
