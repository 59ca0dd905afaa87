"""Users' queries against the real embedded engine: the leak between requests, and its fix.

The embedded ClickHouse (chDB 4.4 / ClickHouse 26.9) runs every statement of a request and,
when one fails, keeps the output already written in the session: the session's next answer
carries it. Reproduced here on a session like the one the store kept for users' queries
until now, then the same requests through :meth:`ClickHouseStore.read` (one read
statement, a new read-only session per request), whose answers belong to their own query.
The splitter is also checked against ClickHouse's own parser on generated SQL.

The engine runs in a subprocess (this file run as a script): one embedded chDB per process.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.own_process import ROOT

pytestmark = pytest.mark.integration

# Fragments of SQL that hide, end or fake a statement; candidates are "SELECT " + some of them.
FRAGMENTS = ["1", "2", "'a'", ";", " ", "\n", "'", '"', "`", "''", "\\", "--", "//", "#", "# ", "#!", "/*",
             "*/", "$", "$$", "$a$", "x'", "b'", "41", "SELECT 2", "AS s", ",", "(", ")", "a", "\\'", "x"]


TAILS = ["", ";", " ;", ";;", "; SELECT 2", ";SELECT 'x;y'", "; -- c", "; /* ; */", "; garbage", "\n; SELECT 2 -- x",
         "; $a$ ; $a$", "; # c", ";\n"]


def candidates(count: int, seed: int = 20261204) -> list[str]:
    """Half raw fragments (mostly broken SQL), half one SELECT of tricky tokens with tricky contents
    and a tail that may end it, repeat the ';' or start a second statement."""
    rng = random.Random(seed)

    def frag() -> str:
        return "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 4)))

    def quoted(quote: str) -> str:
        content = frag()
        if rng.random() < 0.7:  # written correctly, else raw: may close early or never
            content = content.replace("\\", "\\\\").replace(quote, "\\" + quote if rng.random() < 0.5 else quote * 2)
        return quote + content + quote

    def item() -> str:
        kind = rng.randrange(9)
        if kind == 0:
            return str(rng.randint(0, 9))
        if kind == 1:
            return quoted("'")
        if kind == 2:
            return "1 AS " + quoted(rng.choice('"`'))
        if kind == 3:
            return "$t$" + frag().replace("$t$", "") + "$t$"
        if kind == 4:
            return rng.choice(["x'3B'", "b'00111011'", "X'41'"])
        if kind == 5:
            return "1 -- " + frag().replace("\n", " ") + "\n"
        if kind == 6:
            return "1 /* " + frag().replace("*/", "") + " */"
        if kind == 7:
            return "1 " + rng.choice(["# ", "#!", "//"]) + frag().replace("\n", " ") + "\n"
        return frag() or "1"

    out = []
    for n in range(count):
        if n % 2:
            out.append("SELECT " + "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 8))))
        else:
            out.append("SELECT " + ", ".join(item() for _ in range(rng.randint(1, 3))) + rng.choice(TAILS))
    return out


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """What the engine answered, run in a process of its own (see ``_main``)."""
    workdir = tmp_path_factory.mktemp("query-guard")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, __file__, str(workdir)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return {**json.loads(done.stdout), "workdir": workdir}


def test_the_engine_session_hands_a_failed_requests_output_to_the_next_query(engine):
    """The root cause, on a plain read-only session of the embedded engine."""
    raw = dict(engine["raw"])
    # Refused by readonly at its second statement, after the first had written its block...
    assert raw["SELECT 1; DROP TABLE monitoring.alerts"]["error"].count("READONLY")
    # ...which the session's next answer carries: the wrong column name and one row too many.
    assert raw["SELECT 1 AS ok"] == {"columns": ["1"], "rows": [[1], [1]]}
    assert raw["SELECT 1; SELECT 2"] == {"columns": ["1"], "rows": [[1], [2]]}  # both statements run
    # A single statement failing after its first blocks leaves them too: the next answer is garbage.
    assert "error" in raw["SELECT number, throwIf(number = 900000) FROM numbers(1000000)"]
    assert "error" in raw["SELECT 2 AS ok"]
    # And a session keeps what a request set in it: USE is allowed under readonly.
    assert raw["SELECT currentDatabase() AS db"] == {"columns": ["db"], "rows": [["system"]]}


def test_a_retried_query_of_the_monitor_answers_its_own_rows_only(engine):
    """The writer's session too: the monitor retries a failed query, on a new session."""
    failed, succeeded = engine["raw_rows"][0::2], engine["raw_rows"][1::2]
    assert failed == [None] * 20
    # The plain session: after a failure, the next answer carried the failed query's first blocks.
    assert max(succeeded) > 300_000, succeeded
    assert engine["own_failures"] >= 5  # the retry path ran (p = 1/2 per attempt, 20 queries)
    assert engine["own_rows"] == [300_000] * 20


def test_each_answer_belongs_to_its_own_query_only(engine):
    store = dict(engine["store"])
    assert "one statement per request" in store["SELECT 1; DROP TABLE monitoring.alerts"]["refused"]
    assert store["SELECT 1 AS ok"] == {"columns": ["ok"], "rows": [[1]], "truncated": False}
    assert "second statement" in store["SELECT 1; SELECT 2"]["refused"]
    # A statement that fails inside the engine, then a clean answer: the failed session is gone.
    assert "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO" in store[
        "SELECT number, throwIf(number = 900000) FROM numbers(1000000)"]["error"]
    assert store["SELECT 2 AS ok"] == {"columns": ["ok"], "rows": [[2]], "truncated": False}
    assert "not USE" in store["USE system"]["refused"]
    assert store["SELECT currentDatabase() AS db"] == {"columns": ["db"], "rows": [["default"]], "truncated": False}
    # Every request runs in a new session that ClickHouse keeps read-only, with a time limit.
    assert store["SELECT getSetting('readonly') AS ro, getSetting('max_execution_time') AS t"]["rows"] == [[1, 60]]
    # Not one statement leaked across: after every hostile request, a marker query answers itself only.
    assert engine["markers_ok"] == engine["markers"] > 20


def test_files_urls_writes_and_setting_changes_stay_refused(engine):
    store = dict(engine["store"])
    workdir = engine["workdir"]
    for sql in ("SELECT file('/etc/hostname')", "SELECT * FROM file('/etc/passwd', 'LineAsString')",
                "SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString')",
                f"SELECT * FROM system.one INTO OUTFILE '{workdir}/outfile.txt'",
                "DROP TABLE monitoring.alerts", "INSERT INTO monitoring.alerts (alert_id) VALUES ('x')",
                "SET readonly = 0", "KILL QUERY WHERE 1", "CREATE TABLE monitoring.x (a UInt8) ENGINE = Memory"):
        assert store[sql].get("refused", "").startswith("refused: "), (sql, store[sql])
    assert not (workdir / "outfile.txt").exists()
    # Past the check, ClickHouse's readonly decides: a setting changed inside a read is refused too.
    assert "READONLY" in store["SELECT 1 SETTINGS readonly = 0"]["error"]
    assert "READONLY" in store["SELECT * FROM numbers(3) SETTINGS max_execution_time = 0"]["error"]
    assert store["SELECT count() AS n FROM monitoring.alerts"] == {"columns": ["n"], "rows": [[0]], "truncated": False}
    assert engine["tables"] == sorted(engine["tables"]) and "alerts" in engine["tables"]


def test_max_rows_stops_reading_after_the_limit(engine):
    store = dict(engine["store"])
    assert store["SELECT number FROM numbers(10000000) ORDER BY number"] == {
        "columns": ["number"], "rows": [[0], [1], [2]], "truncated": True}
    assert store["SELECT number FROM numbers(3) ORDER BY number"] == {
        "columns": ["number"], "rows": [[0], [1], [2]], "truncated": False}


def test_the_splitter_never_lets_two_statements_through_clickhouses_parser(engine):
    """Generated SQL: whenever ClickHouse's parser sees a second statement, the check refused it."""
    verdicts = engine["differential"]
    assert verdicts["let_through"] == []
    assert verdicts["multi"] > 500 and verdicts["accepted_single"] > 500, verdicts  # both sides well covered


def test_the_store_over_http_refuses_the_same(clickhouse_front):
    """The same check on a ClickHouse server (the HTTP front over an embedded store)."""
    from sinks.clickhouse import ClickHouseStore, parse_target
    from sinks.sql_guard import RefusedQuery

    async def run() -> None:
        store = ClickHouseStore(parse_target(clickhouse_front.url))
        await store.start()
        try:
            for sql in ("SELECT 1; SELECT 2", "SELECT file('/etc/hostname')", "DROP TABLE monitoring.alerts"):
                with pytest.raises(RefusedQuery):
                    await store.read_async(sql)
            with pytest.raises(Exception, match="(?i)readonly"):
                await store.read_async("SELECT 1 SETTINGS readonly = 0")
            assert await store.readonly_query_async("SELECT 1 AS ok;") == (["ok"], [(1,)])
            answer = await store.read_async("SELECT number FROM numbers(100)", max_rows=2)
            assert (answer.rows, answer.truncated) == ([(0,), (1,)], True)
        finally:
            await store.close()

    asyncio.run(run())


# --- the subprocess --------------------------------------------------------------------------------

FAILS_LATE = "SELECT number FROM numbers(300000) WHERE throwIf(number = 250000) = 0"
SUCCEEDS = "SELECT number FROM numbers(300000)"
SOMETIMES_FAILS_LATE = "SELECT number FROM numbers(300000) WHERE throwIf(number = 250000 AND rand() % 2 = 0) = 0"
RAW_SEQUENCE = [
    "SELECT 1; DROP TABLE monitoring.alerts", "SELECT 1 AS ok", "SELECT 1; SELECT 2",
    "SELECT number, throwIf(number = 900000) FROM numbers(1000000)", "SELECT 2 AS ok",
    "USE system", "SELECT currentDatabase() AS db",
]
HOSTILE = [
    "SELECT 1; DROP TABLE monitoring.alerts", "SELECT 1; SELECT 2", "SELECT 'a;b'; SELECT 2",
    "SELECT number, throwIf(number = 900000) FROM numbers(1000000)", "USE system",
    "SELECT file('/etc/hostname')", "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString')", "DROP TABLE monitoring.alerts",
    "INSERT INTO monitoring.alerts (alert_id) VALUES ('x')", "SET readonly = 0", "KILL QUERY WHERE 1",
    "CREATE TABLE monitoring.x (a UInt8) ENGINE = Memory", "SELECT 1 SETTINGS readonly = 0",
    "SELECT * FROM numbers(3) SETTINGS max_execution_time = 0",
]


def _outcome(run) -> dict:  # type: ignore[no-untyped-def]
    from sinks.sql_guard import RefusedQuery

    try:
        answer = run()
    except RefusedQuery as err:
        return {"refused": str(err)}
    except Exception as err:  # noqa: BLE001 - what the engine said
        return {"error": (str(err).strip().splitlines() or [type(err).__name__])[0][:300]}
    columns, rows = (answer.columns, answer.rows) if hasattr(answer, "columns") else answer
    out = {"columns": list(columns), "rows": [list(r) for r in rows]}
    if hasattr(answer, "truncated"):
        out["truncated"] = answer.truncated
    return out


def _main(workdir: Path) -> dict:
    import chdb
    import clickhouse_connect

    from sinks.clickhouse import ClickHouseStore, parse_target
    from sinks.sql_guard import RefusedQuery, single_statement

    path = (workdir / "clickhouse").resolve()
    target = parse_target(f"chdb://{path}")

    async def create() -> ClickHouseStore:
        store = ClickHouseStore(target)
        await store.start()
        return store

    store = asyncio.run(create())  # holds the engine open (its writer) like a worker does
    # The session users' queries had until now: one client, readonly, kept across requests.
    raw = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    raw.command("SET readonly = 1")

    def raw_query(sql: str):  # type: ignore[no-untyped-def]
        result = raw.query(sql)
        return result.column_names, result.result_rows

    raw_outcomes = [(sql, _outcome(lambda sql=sql: raw_query(sql))) for sql in RAW_SEQUENCE]
    # The same query failing after its first blocks, then succeeding: the success has too many rows.
    # (Whether a failed query's blocks were written before it failed depends on its threads: try 20 times.)
    raw_rows = []
    for _ in range(20):
        for sql in (FAILS_LATE, SUCCEEDS):
            try:
                raw_rows.append(len(raw.query(sql).result_rows))
            except Exception:  # noqa: BLE001
                raw_rows.append(None)
    raw.close()

    # The monitor's own queries are retried after a failure: a query failing half of the time
    # after its first blocks must still answer exactly its own rows when it succeeds.
    store.retry_initial = store.retry_max = 0.01

    async def own() -> list[int]:
        return [len(await store.query(SOMETIMES_FAILS_LATE)) for _ in range(20)]

    own_rows = asyncio.run(own())
    own_failures = store.failures

    store_outcomes = [(sql, _outcome(lambda sql=sql: store.read(sql))) for sql in RAW_SEQUENCE]
    extra = [
        "SELECT getSetting('readonly') AS ro, getSetting('max_execution_time') AS t",
        f"SELECT * FROM system.one INTO OUTFILE '{workdir}/outfile.txt'",
        *HOSTILE, "SELECT count() AS n FROM monitoring.alerts",
    ]
    store_outcomes += [(sql, _outcome(lambda sql=sql: store.read(sql))) for sql in extra]
    store_outcomes += [(sql, _outcome(lambda sql=sql: store.read(sql, max_rows=3))) for sql in (
        "SELECT number FROM numbers(10000000) ORDER BY number", "SELECT number FROM numbers(3) ORDER BY number")]
    # Hostile requests, each followed by a marker query that must answer itself and nothing else.
    markers = markers_ok = 0
    for i, sql in enumerate(HOSTILE * 2):
        _outcome(lambda sql=sql: store.read(sql))
        got = _outcome(lambda i=i: store.read(f"SELECT {i} AS marker_{i}"))
        markers += 1
        markers_ok += got == {"columns": [f"marker_{i}"], "rows": [[i]], "truncated": False}
    tables = [r[0] for r in store.read("SHOW TABLES FROM monitoring").rows]

    async def close() -> None:
        await store.close()

    asyncio.run(close())

    # The splitter against ClickHouse's parser: formatQuery says whether it sees a second statement.
    parser = chdb.connect(":memory:")
    let_through, multi, accepted_single = [], 0, 0
    for sql in candidates(4000):
        escaped = "'" + sql.replace("\\", "\\\\").replace("'", "\\'") + "'"
        try:
            parser.query(f"SELECT formatQuerySingleLine({escaped})", "TSV")
            engine_multi, engine_ok = False, True
        except Exception as err:  # noqa: BLE001
            engine_multi, engine_ok = "Multi-statements are not allowed" in str(err), False
        try:
            single_statement(sql)
            accepted = True
        except RefusedQuery:
            accepted = False
        multi += engine_multi
        accepted_single += accepted and engine_ok
        if engine_multi and accepted:
            let_through.append(sql)
    parser.close()
    return {"raw": raw_outcomes, "raw_rows": raw_rows, "own_rows": own_rows, "own_failures": own_failures,
            "store": store_outcomes, "markers": markers, "markers_ok": markers_ok,
            "tables": tables, "differential": {"let_through": let_through, "multi": multi,
                                               "accepted_single": accepted_single}}


if __name__ == "__main__":
    sys.stdout.write(json.dumps(_main(Path(sys.argv[1])), default=str))
