"""Query the monitor's figures: `python -m sinks.query "SELECT ..." [--format table|json|csv]`.

Against a ClickHouse server (CLICKHOUSE_URL=http...) the query goes straight to
it. The embedded store can be opened by one process only, so while a worker runs
the query goes through the worker's web port (``/query``), and with no worker the
command opens the store itself. Every path takes one read statement per request
(sinks/sql_guard.py: a second statement, ``file()``, ``url()`` or ``INTO OUTFILE`` is
refused before anything is sent) and runs it in a session of its own under
ClickHouse's ``readonly`` setting, the authority on writes.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson

from sinks.clickhouse import ReadAnswer, parse_target
from sinks.sql_guard import RefusedQuery, single_statement
from streams.settings import Settings, SettingsError, load_settings


class QueryError(Exception):
    """The query could not run; the message is one line for the user."""


def via_worker(settings: Settings, sql: str, timeout: float = 60.0,
               max_rows: int | None = None) -> ReadAnswer | None:
    """Ask a running worker; None when no worker listens on the web port."""
    host = "127.0.0.1" if settings.web_host in {"0.0.0.0", "::"} else settings.web_host
    url = f"http://{host}:{settings.web_port}/query"
    if max_rows is not None:
        url += "?" + urllib.parse.urlencode({"max_rows": max_rows})
    request = urllib.request.Request(url, data=sql.encode("utf-8"), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = orjson.loads(response.read())
    except urllib.error.HTTPError as err:
        try:
            message = orjson.loads(err.read()).get("error", str(err))
        except orjson.JSONDecodeError:
            message = str(err)
        raise QueryError(message) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    return ReadAnswer(body["columns"], body["rows"], bool(body.get("truncated", False)))


def direct(settings: Settings, sql: str, max_rows: int | None = None) -> ReadAnswer:
    from sinks.clickhouse import OpenError, read_only

    target = parse_target(settings.clickhouse_dsn())
    try:
        return read_only(target, sql, max_rows=max_rows)
    except RefusedQuery as err:
        raise QueryError(str(err)) from None
    except OpenError as err:
        text = str(err).splitlines()[0]
        if "EmbeddedServer" in text or "BAD_ARGUMENTS" in text:
            raise QueryError(
                f"the embedded store {target.embedded_path} is held by another process and no worker answers on "
                f"{settings.web_host}:{settings.web_port}; set MONITOR_WEB_PORT to the worker's web port"
            ) from None
        raise QueryError(text[:500]) from None
    except Exception as err:  # noqa: BLE001 - turned into one line for the user
        raise QueryError((str(err).strip().splitlines() or [type(err).__name__])[0][:500]) from None


def run_read(settings: Settings, sql: str, max_rows: int | None = None) -> ReadAnswer:
    """Route one read statement: a server directly, else the running worker, else the
    embedded store. Refused (:class:`QueryError`) here already when it is not one read
    statement, so that a refused request reaches no engine on any path."""
    try:
        single_statement(sql)
    except RefusedQuery as err:
        raise QueryError(str(err)) from None
    if parse_target(settings.clickhouse_dsn()).kind == "chdb":
        answer = via_worker(settings, sql, max_rows=max_rows)
        if answer is not None:
            return answer
    return direct(settings, sql, max_rows=max_rows)


def run_query(settings: Settings, sql: str) -> tuple[list[str], list[list[Any]]]:
    """:func:`run_read` as (columns, rows)."""
    answer = run_read(settings, sql)
    return answer.columns, [list(r) for r in answer.rows]


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def render(columns: list[str], rows: list[list[Any]], fmt: str) -> str:
    if fmt == "json":
        return orjson.dumps([dict(zip(columns, r, strict=True)) for r in rows],
                            option=orjson.OPT_INDENT_2 | orjson.OPT_NAIVE_UTC, default=str).decode()
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if v is None else v for v in r] for r in rows])
        return out.getvalue().rstrip("\n")
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False)
    for name in columns:
        table.add_column(name)
    for r in rows:
        table.add_row(*(_cell(v) for v in r))
    console = Console(file=io.StringIO(), width=200, force_terminal=False)
    console.print(table)
    console.print(f"{len(rows)} row(s)")
    return console.file.getvalue().rstrip("\n")  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sinks.query", description="Run a read-only SQL query.")
    parser.add_argument("sql", help="the query, e.g. \"SELECT * FROM monitoring.window_metrics FINAL\"")
    parser.add_argument("--format", choices=["table", "json", "csv"], default="table")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        columns, rows = run_query(settings, args.sql)
    except (SettingsError, QueryError) as err:
        print(f"query: {err}", file=sys.stderr)
        return 2
    print(render(columns, rows, args.format))
    return 0


if __name__ == "__main__":
    sys.exit(main())
