"""The ClickHouse HTTP front (sinks.http_front) with the unchanged clickhouse-connect HTTP client.

Every test talks to a real front process over a real socket: one chDB engine that several
clients and processes share, an outage that refuses connections, a restart on the same data,
and the monitor's own store writing through ``CLICKHOUSE_URL=http://...``.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import math
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import clickhouse_connect
import orjson
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from sinks.clickhouse import ClickHouseStore, parse_target
from sinks.http_front import FrontProcess
from sinks.schema import TABLES, columns

pytestmark = pytest.mark.integration

COLUMNS = ["k", "ts", "x", "s", "flag", "n", "tags", "v"]
TYPES = ["UInt64", "DateTime64(3, 'UTC')", "Nullable(Float64)", "String", "UInt8", "Int64",
         "Array(String)", "UInt64"]
DDL = ("CREATE TABLE facts (k UInt64, ts DateTime64(3, 'UTC'), x Nullable(Float64), s String, "
       "flag UInt8, n Int64, tags Array(String), v UInt64) ENGINE = ReplacingMergeTree(v) ORDER BY k")
ODD = "héllo\x00\n\t'\"\\ ,;"  # every byte a text format must escape, and non-ASCII


def client_for(front: FrontProcess, **kwargs: Any) -> Client:
    return clickhouse_connect.get_client(host=front.host, port=front.port, **kwargs)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def wall(*args: int) -> datetime:
    """UTC wall time, naive: how clickhouse-connect returns a DateTime64(3, 'UTC') column
    (the embedded chDB client does the same)."""
    return utc(*args).replace(tzinfo=None)


def test_native_and_json_inserts_round_trip_exactly_and_final_deduplicates(clickhouse_front: FrontProcess):
    client = client_for(clickhouse_front)
    assert client.command("SELECT version()") == client.server_version  # handshake went through the front
    client.command(DDL)
    native = [
        [1, utc(2026, 1, 5, 10, 0, 0, 123000), None, ODD, 1, -5, ["a", "b ,'"], 1],
        [2, utc(2026, 1, 5, 10, 0, 1, 999000), float("nan"), "", 0, 2**62, [], 1],
        [3, utc(1999, 12, 31, 23, 59, 59, 1000), float("inf"), "😀 ü", 255, -(2**63), ["ü", ""], 1],
    ]
    summary = client.insert("facts", native, column_names=COLUMNS)  # Native, lz4-compressed
    assert summary.written_rows == 3
    # The sink's path: JSONCompactEachRow bodies, epoch seconds for DateTime64
    json_rows = [[4, 1767607200.5, 1.25, 'naïve "quoted"', 1, 7, ["x"], 1],
                 [5, 1767607200.001, None, "", 0, 0, [], 1],
                 [1, "2026-01-05 11:00:00.000", 2.5, "replaced", 0, 0, [], 2]]
    body = b"\n".join(orjson.dumps(row) for row in json_rows)
    client.raw_insert("facts", COLUMNS, body, fmt="JSONCompactEachRow")

    result = client.query("SELECT * FROM facts FINAL ORDER BY k")
    assert result.column_names == tuple(COLUMNS)
    assert [t.name for t in result.column_types] == TYPES
    rows = result.result_rows
    assert rows[0] == (1, wall(2026, 1, 5, 11, 0), 2.5, "replaced", 0, 0, [], 2)
    assert rows[1][:2] == (2, wall(2026, 1, 5, 10, 0, 1, 999000)) and math.isnan(rows[1][2])
    assert rows[1][3:] == ("", 0, 2**62, [], 1)
    assert rows[2] == (3, wall(1999, 12, 31, 23, 59, 59, 1000), math.inf, "😀 ü", 255, -(2**63),
                       ["ü", ""], 1)
    assert rows[3] == (4, wall(2026, 1, 5, 10, 0, 0, 500000), 1.25, 'naïve "quoted"', 1, 7, ["x"], 1)
    assert rows[4] == (5, wall(2026, 1, 5, 10, 0, 0, 1000), None, "", 0, 0, [], 1)
    assert len(rows) == 5
    # Instants independent of how the client renders time zones; the odd string byte for byte
    millis = client.query("SELECT k, toUnixTimestamp64Milli(ts) FROM facts FINAL ORDER BY k").result_rows
    assert millis == [(1, 1767610800000), (2, 1767607201999), (3, 946684799001), (4, 1767607200500),
                      (5, 1767607200001)]
    client.insert("facts", [[6, utc(2026, 1, 1), None, ODD, 0, 0, [ODD], 1]], column_names=COLUMNS)
    assert client.query("SELECT s, tags[1] FROM facts WHERE k = 6").result_rows == [(ODD, ODD)]
    # Other output formats than Native
    lines = client.raw_query("SELECT k, s FROM facts FINAL WHERE k IN (1, 4) ORDER BY k FORMAT JSONEachRow")
    assert [json.loads(line) for line in lines.splitlines()] == [{"k": 1, "s": "replaced"},
                                                                 {"k": 4, "s": 'naïve "quoted"'}]
    assert client.raw_query("SELECT k FROM facts FINAL ORDER BY k", fmt="CSV") == b"1\n2\n3\n4\n5\n6\n"
    assert client.query("SELECT * FROM facts LIMIT 0").column_names == tuple(COLUMNS)  # JSON probe
    assert client.command("SELECT count() FROM facts WHERE k = 99") == 0
    assert client.command("SELECT k FROM facts WHERE k = 99") == ""  # empty result set, not a summary


def test_errors_carry_the_server_message_and_code(clickhouse_front: FrontProcess):
    client = client_for(clickhouse_front)
    client.command(DDL)
    with pytest.raises(DatabaseError) as missing:
        client.query("SELECT * FROM missing_table")
    assert missing.value.code == 60
    assert "server response: Code: 60. DB::Exception: Unknown table expression identifier 'missing_table'" \
        in str(missing.value)
    trailer = f"(UNKNOWN_TABLE) (version {client.server_version}) (for url {clickhouse_front.url})"
    assert str(missing.value).endswith(trailer)
    with pytest.raises(DatabaseError) as syntax:
        client.command("SELEC 1")
    assert syntax.value.code == 62 and "SYNTAX_ERROR" in str(syntax.value)
    with pytest.raises(DatabaseError) as bad_row:
        client.raw_insert("facts", ["k", "s"], b'[1, "a"]\n[2, oops]', fmt="JSONCompactEachRow")
    assert bad_row.value.code == 117 and "(INCORRECT_DATA)" in str(bad_row.value)
    assert client.command("SELECT count() FROM facts") == 0  # the failed insert wrote nothing
    assert client.command("SELECT 1") == 1  # the connection is still usable
    # The wire format itself: status, exception header, ClickHouse's text
    conn = http.client.HTTPConnection(clickhouse_front.host, clickhouse_front.port, timeout=10)
    conn.request("POST", "/", body=b"SELECT nope")
    response = conn.getresponse()
    body = response.read().decode()
    assert (response.status, response.getheader("X-ClickHouse-Exception-Code")) == (500, "47")
    assert body.startswith("Code: 47. DB::Exception: Unknown expression identifier `nope`")
    conn.request("POST", "/?session_id=never-opened&session_check=1", body=b"SELECT 1")
    response = conn.getresponse()
    assert (response.status, response.getheader("X-ClickHouse-Exception-Code")) == (500, "372")
    assert response.read().startswith(
        b"Code: 372. DB::Exception: Session never-opened not found. (SESSION_NOT_FOUND)")
    conn.request("GET", "/ping")
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"Ok.\n")
    conn.request("GET", "/?query=SELECT%201%2B1")
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"2\n")
    conn.request("GET", "/?query=CREATE%20TABLE%20g%20(a%20UInt8)%20ENGINE%3DMemory")  # GET is read-only
    response = conn.getresponse()
    assert (response.status, response.getheader("X-ClickHouse-Exception-Code")) == (500, "164")
    response.read()
    conn.close()


def test_url_parameters_database_settings_sessions_and_compression(clickhouse_front: FrontProcess):
    client = client_for(clickhouse_front)
    client.command("CREATE DATABASE other")
    client.command("CREATE TABLE other.t (a UInt64, s String) ENGINE = MergeTree ORDER BY a")
    in_other = client_for(clickhouse_front, database="other")
    assert in_other.command("SELECT currentDatabase()") == "other"
    in_other.insert("t", [[1, "x"]], column_names=["a", "s"])
    assert client.query("SELECT a, s FROM other.t").result_rows == [(1, "x")]
    assert client.command("SELECT currentDatabase()") == "default"

    # Client-level settings (readonly, as the store's reader sends) hold on every request...
    reader = client_for(clickhouse_front, settings={"readonly": 1})
    assert reader.command("SELECT count() FROM other.t") == 1
    with pytest.raises(DatabaseError) as refused:
        reader.command("INSERT INTO other.t VALUES (2, 'y')")
    assert refused.value.code == 164
    # ...and never leak into other clients or other requests
    client.command("INSERT INTO other.t VALUES (2, 'y')")
    default_block = client.command("SELECT getSetting('max_block_size')")
    assert client.command("SELECT getSetting('max_block_size')", settings={"max_block_size": 1234}) == 1234
    assert client.command("SELECT getSetting('max_block_size')") == default_block != 1234

    # Sessions: SET and temporary tables stay with the client that made them
    client.command("SET max_block_size = 777")
    client.command("CREATE TEMPORARY TABLE tmp (a UInt8)")
    client.insert("tmp", [[1], [2]], column_names=["a"])
    assert client.command("SELECT sum(a) FROM tmp") == 3
    assert client.command("SELECT getSetting('max_block_size')") == 777
    other = client_for(clickhouse_front)
    assert other.command("SELECT getSetting('max_block_size')") == default_block
    with pytest.raises(DatabaseError) as unseen:
        other.command("SELECT * FROM tmp")
    assert unseen.value.code == 60

    # Query ids, bind parameters (URL and multipart form)
    assert client.query("SELECT 1", settings={"query_id": "front-q-1"}).summary["query_id"] == "front-q-1"
    query, parameters = "SELECT {s:String} AS s, {n:Int64} AS n", {"s": "it's\n", "n": -3}
    assert client.query(query, parameters=parameters).result_rows == [("it's\n", -3)]
    form = client_for(clickhouse_front, form_encode_query_params=True)
    assert form.query(query, parameters=parameters).result_rows == [("it's\n", -3)]

    # Request bodies in every encoding the client sends (lz4 is its default, used above)
    for key, compress in enumerate(["zstd", "gzip", False], start=10):
        client_for(clickhouse_front, compress=compress).insert("other.t", [[key, str(compress)]],
                                                                column_names=["a", "s"])
    for key, (encoding, pack) in enumerate([("gzip", gzip.compress), ("deflate", zlib.compress)], start=20):
        client.raw_insert("other.t", ["a", "s"], pack(b'[%d, "%s"]' % (key, encoding.encode())),
                          fmt="JSONCompactEachRow", compression=encoding)
    assert client.query("SELECT a, s FROM other.t WHERE a >= 10 ORDER BY a").result_rows == [
        (10, "zstd"), (11, "gzip"), (12, "False"), (20, "gzip"), (21, "deflate")]


WRITER = textwrap.dedent("""
    import sys, clickhouse_connect
    from datetime import UTC, datetime
    port, first, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    client = clickhouse_connect.get_client(host="127.0.0.1", port=port)
    for batch in range(40):
        keys = range(first + batch * 250, first + (batch + 1) * 250)
        if mode == "native":
            rows = [[k, datetime.fromtimestamp(k / 1000, UTC), None, "n%d" % k, 1, -k, [], 1] for k in keys]
            client.insert("facts", rows, column_names=["k", "ts", "x", "s", "flag", "n", "tags", "v"])
        else:
            body = "\\n".join('[%d, %d.5, %d.25, "j%d"]' % (k, k, k, k) for k in keys)
            client.raw_insert("facts", ["k", "ts", "x", "s"], body.encode(), fmt="JSONCompactEachRow")
""")


def test_two_processes_writing_concurrently_lose_nothing(clickhouse_front: FrontProcess):
    client = client_for(clickhouse_front)
    client.command(DDL)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(clickhouse_front.port), str(first), mode],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for first, mode in ((0, "native"), (100_000, "json"))]
    for writer in writers:
        output, _ = writer.communicate(timeout=300)
        assert writer.returncode == 0, output
    totals = client.query(
        "SELECT count(), uniqExact(k), sum(k), countIf(startsWith(s, 'n')), countIf(startsWith(s, 'j')),"
        " sum(x), sum(n) FROM facts").result_rows[0]
    native_keys, json_keys = range(0, 10_000), range(100_000, 110_000)
    assert totals == (20_000, 20_000, sum(native_keys) + sum(json_keys), 10_000, 10_000,
                      sum(k + 0.25 for k in json_keys), -sum(native_keys))
    assert client.command("SELECT toUnixTimestamp64Milli(ts) FROM facts WHERE k = 100007") == 100_007_500


def test_stop_refuses_connections_and_restart_serves_the_same_rows(
        start_clickhouse_front: Callable[..., FrontProcess], tmp_path: Path):
    front = start_clickhouse_front(tmp_path / "store")
    client = client_for(front)
    client.command(DDL)
    client.insert("facts", [[k, utc(2026, 1, 5), float(k), f"r{k}", 0, k, [], 1] for k in range(3)],
                  column_names=COLUMNS)
    before = client.query("SELECT * FROM facts ORDER BY k").result_rows

    assert front.stop() == 0, front.log_tail()
    with pytest.raises(OperationalError) as down:
        client.query("SELECT count() FROM facts")
    assert "Connection refused" in str(down.value)
    with pytest.raises(OperationalError):
        client_for(front)

    again = start_clickhouse_front(front.path, port=front.port)
    assert again.port == front.port
    assert client.query("SELECT * FROM facts ORDER BY k").result_rows == before  # same client, same rows
    assert len(before) == 3 and before[2][3] == "r2"
    client.insert("facts", [[3, utc(2026, 1, 6), None, "after", 0, 0, [], 1]], column_names=COLUMNS)
    assert client_for(again).command("SELECT count() FROM facts") == 4


LOOP_WRITER = textwrap.dedent("""
    import sys, clickhouse_connect
    client = clickhouse_connect.get_client(host="127.0.0.1", port=int(sys.argv[1]))
    batch = 0
    try:
        while True:
            body = "\\n".join('[%d, 0, null, "b%d"]' % (batch * 1000 + i, batch) for i in range(1000))
            client.raw_insert("facts", ["k", "ts", "x", "s"], body.encode(), fmt="JSONCompactEachRow")
            print(batch, flush=True)  # acknowledged
            batch += 1
    except Exception as err:
        print("stopped", type(err).__name__, flush=True)
""")


def test_stop_under_load_keeps_every_acknowledged_insert_whole(
        start_clickhouse_front: Callable[..., FrontProcess], tmp_path: Path):
    front = start_clickhouse_front(tmp_path / "store")
    client_for(front).command(DDL)
    writer = subprocess.Popen([sys.executable, "-c", LOOP_WRITER, str(front.port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert writer.stdout is not None
    acknowledged = [int(writer.stdout.readline()) for _ in range(5)]
    assert front.stop() == 0, front.log_tail()  # while the writer keeps inserting
    rest, _ = writer.communicate(timeout=60)
    *more, last = rest.splitlines()
    acknowledged += [int(line) for line in more]
    assert last == "stopped OperationalError" and writer.returncode == 0
    assert acknowledged == list(range(len(acknowledged)))

    again = start_clickhouse_front(front.path, port=front.port)
    by_batch = client_for(again).query("SELECT intDiv(k, 1000), count() FROM facts GROUP BY 1")
    stored = dict(by_batch.result_rows)
    # every acknowledged batch whole, exactly once; the one under way when it stopped all or nothing
    assert {b: stored.get(b) for b in acknowledged} == dict.fromkeys(acknowledged, 1000)
    assert set(stored) - set(acknowledged) <= {len(acknowledged)}
    assert set(stored.values()) == {1000}


def _value(ddl_type: str) -> Any:
    """A value of a schema column's type, for a row built from the DDL whatever columns it has."""
    if ddl_type.startswith("Nullable("):
        return None
    if ddl_type.startswith("DateTime64"):
        return datetime(2026, 1, 5, 10, 0, 0, 123000, tzinfo=UTC)
    if ddl_type.startswith(("UInt", "Int")):
        return 7
    if ddl_type.startswith("Float"):
        return 0.5
    if ddl_type.startswith("Map("):
        return {}
    return "v"


def test_monitor_store_creates_schema_and_round_trips_over_http(clickhouse_front: FrontProcess):
    store = ClickHouseStore(parse_target(clickhouse_front.url), retry_initial=0.05)
    ddl_types = {line.split()[0]: line.split(None, 1)[1].rstrip(",")
                 for line in TABLES["labels"].strip().splitlines() if line.strip()}
    row = {name: _value(ddl_types[name]) for name in columns("labels")}
    row.update(request_id="r-1", label="1", labeled_at=datetime(2026, 1, 5, 10, 0, 0, 123000, tzinfo=UTC),
               ingested_at=1767607200.123456)

    async def scenario() -> tuple[Any, ...]:
        await store.start()
        try:
            tables = await store.query("SELECT name FROM system.tables WHERE database = 'monitoring'")
            await store.insert("labels", [[row[name] for name in columns("labels")]])
            stored = await store.query("SELECT request_id, label, toUnixTimestamp64Milli(labeled_at),"
                                       " toUnixTimestamp64Micro(ingested_at) FROM monitoring.labels FINAL")
            readable = await store.readonly_query_async("SELECT count() FROM monitoring.labels")
            return tables, stored, readable
        finally:
            await store.close()

    tables, stored, readable = asyncio.run(scenario())
    assert {name for (name,) in tables} == set(TABLES)
    assert stored == [("r-1", "1", 1767607200123, 1767607200123456)]
    assert readable == (["count()"], [(1,)])
    assert store.rows_written == {"labels": 1} and store.failures == 0
