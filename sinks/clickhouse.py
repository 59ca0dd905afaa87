"""One ClickHouse store for the embedded engine (chDB) and servers, behind one small API.

The monitor's own calls run on a single worker thread, off the event loop (chDB allows
one engine per process and its client is not thread-safe). Writes retry with
backoff while ClickHouse is unreachable, so no row is dropped: the caller awaits
the write, which is what pauses consumption (backpressure) during an outage.

Users' queries (``/query``, ``python -m sinks.query``, ``python -m sinks.mcp``) go
through :func:`read_only`: one read statement (sinks/sql_guard.py), in a session of
its own that ClickHouse keeps read-only, opened for that statement and closed after
it, on a thread of their own. The embedded engine keeps the output of a failed
request in its session and hands it out with the next answer of that session
(``SELECT 1; DROP TABLE x`` refused, then ``SELECT 1 AS ok`` answered ``1`` twice);
a session that never serves a second request cannot pass anything on.
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
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import clickhouse_connect
import orjson
from clickhouse_connect.driver.client import Client

from sinks.schema import create_statements, insert_columns
from sinks.sql_guard import single_statement

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_DATABASE = "monitoring"
READ_TIMEOUT_S = 60  # the longest a user's query may run in the embedded engine
_JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_SERIALIZE_NUMPY
# A JSON object in a row (an ``orjson.Fragment`` of JSON text) goes into a String column as its
# text, byte for byte: no escaping into a JSON string and back. The default since ClickHouse 23,
# set for older servers.
_INSERT_SETTINGS = {"input_format_json_read_objects_as_strings": 1}


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
            # Session-wide settings on a session of its own (per-query settings in the
            # embedded engine are applied with SET and could leak into the writer);
            # readonly last: from then on the session cannot change any setting.
            client.command(f"SET max_execution_time = {READ_TIMEOUT_S}")
            client.command("SET allow_introspection_functions = 0")
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


class OpenError(ConnectionError):
    """The store could not be opened for a user's query (e.g. another process holds the embedded one)."""


@dataclass(frozen=True)
class ReadAnswer:
    """A user's query answered: column names, rows, and whether rows beyond ``max_rows`` were cut."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool = False

    def to_json(self) -> bytes:
        """``{"columns": [...], "rows": [[...]], "truncated": bool}``: what ``/query`` answers.
        Times are ISO-8601 text, NaN is null, other values their JSON form or text."""
        return orjson.dumps({"columns": self.columns, "rows": [list(r) for r in self.rows],
                             "truncated": self.truncated},
                            option=orjson.OPT_NAIVE_UTC | orjson.OPT_SERIALIZE_NUMPY, default=str)


def read_only(target: Target, sql: str, *, max_rows: int | None = None) -> ReadAnswer:
    """One user statement, checked by :func:`sinks.sql_guard.single_statement` (which raises
    :class:`sinks.sql_guard.RefusedQuery` before anything reaches ClickHouse), run in a new
    read-only session that is closed afterwards, whether the statement succeeded or not.

    With ``max_rows``, rows are read block by block and reading stops after ``max_rows``
    (``truncated`` says whether more were there)."""
    statement = single_statement(sql)
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    try:
        client = open_client(target, readonly=True)
    except Exception as err:
        raise OpenError(f"cannot open {target.describe()}: {str(err).strip() or type(err).__name__}") from err
    try:
        settings = None if target.kind == "chdb" else {"readonly": 1}
        if max_rows is None:
            result = client.query(statement, settings=settings)
            return ReadAnswer(list(result.column_names), list(result.result_rows))
        rows: list[tuple[Any, ...]] = []
        with client.query_row_block_stream(statement, settings=settings) as stream:
            names = list(stream.source.column_names)
            for block in stream:
                rows.extend(tuple(r) for r in block)
                if len(rows) > max_rows:
                    break
        return ReadAnswer(names, rows[:max_rows], len(rows) > max_rows)
    finally:
        client.close()


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
        # Users' queries wait on their own thread: a slow one never holds up the monitor's writes.
        self._read_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-read")
        self._client: Client | None = None
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
                result = await self._call(partial(self._writer_call, fn))
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

    def _writer_call(self, fn: Callable[[], T]) -> T:
        """``fn`` on the writer's session; after a failure the embedded engine's session is
        replaced: it may hold what the failed call wrote before it failed, and would hand that
        out with its next answer (the retry's)."""
        try:
            return fn()
        except Exception:
            if self.target.kind == "chdb" and self._client is not None:
                client, self._client = self._client, None
                try:
                    client.close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    log.debug("closing a failed ClickHouse session failed", exc_info=True)
            raise

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
        values are epoch seconds (float) or datetimes; a String column may be given JSON
        object text as an ``orjson.Fragment`` (stored as that text). Columns the engine
        derives (:data:`sinks.schema.DERIVED_COLUMNS`) are not in the rows.
        """
        if not rows:
            return
        names = insert_columns(table)

        def write() -> None:
            body = b"\n".join([orjson.dumps(row, default=_json_default, option=_JSON_OPTIONS) for row in rows])
            self._writer().raw_insert(f"`{self.database}`.`{table}`", names, body, settings=_INSERT_SETTINGS,
                                      fmt="JSONCompactEachRow")

        self.rows_pending += len(rows)
        try:
            await self._with_retry(f"insert into {table}", write)
        finally:
            self.rows_pending -= len(rows)
        self.rows_written[table] = self.rows_written.get(table, 0) + len(rows)

    async def query(self, sql: str) -> list[tuple[Any, ...]]:
        """A query of the monitor's own (retried like writes)."""
        return await self._with_retry("query", lambda: self._writer().query(sql).result_rows)

    def read(self, sql: str, *, max_rows: int | None = None) -> ReadAnswer:
        """A user's query: one read statement in a read-only session of its own (:func:`read_only`)."""
        self._check_available()
        with self._reader_lock:
            return read_only(self.target, sql, max_rows=max_rows)

    async def read_async(self, sql: str, *, max_rows: int | None = None) -> ReadAnswer:
        """:meth:`read` on the users' thread, never queued behind (or ahead of) the monitor's writes."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_executor, lambda: self.read(sql, max_rows=max_rows))

    def readonly_query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """:meth:`read` as (columns, rows)."""
        answer = self.read(sql)
        return answer.columns, answer.rows

    async def readonly_query_async(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        answer = await self.read_async(sql)
        return answer.columns, answer.rows

    async def close(self) -> None:
        def shutdown() -> None:
            if self._client is not None:
                try:
                    self._client.close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    log.debug("closing a ClickHouse client failed", exc_info=True)
            self._client = None

        await asyncio.get_running_loop().run_in_executor(self._read_executor, lambda: None)  # queries under way end
        self._read_executor.shutdown(wait=True)
        await self._call(shutdown)
        self._executor.shutdown(wait=True)
