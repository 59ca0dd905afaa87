"""A store written by an older release gets the newer columns on start, its rows intact."""

from __future__ import annotations

import asyncio

import pytest

from sinks.clickhouse import ClickHouseStore, open_client, parse_target
from sinks.schema import ADDED_COLUMNS, ENGINES, TABLES

pytestmark = pytest.mark.integration


def _old_ddl(table: str) -> str:
    added = {column.split()[0] for column in ADDED_COLUMNS.get(table, [])}
    kept = [line.strip().rstrip(",") for line in TABLES[table].strip().splitlines()
            if line.strip() and line.split()[0] not in added]
    return f"CREATE TABLE monitoring.`{table}` ({', '.join(kept)}) ENGINE = {ENGINES[table]}"


def test_old_store_is_upgraded_in_place(tmp_path):
    target = parse_target(f"chdb://{tmp_path / 'store'}")
    client = open_client(target)
    client.command("CREATE DATABASE monitoring")
    for table in ADDED_COLUMNS:
        client.command(_old_ddl(table))
    client.command("INSERT INTO monitoring.outcomes (request_id, model, model_version, prediction, label, correct) "
                   "VALUES ('r1', 'm', 'v', '1', '0', 0)")
    client.close()

    async def start_twice() -> list[tuple]:
        for _ in range(2):  # the second start finds the columns there already
            store = ClickHouseStore(target)
            await store.start()
            rows = await store.query("SELECT request_id, late FROM monitoring.outcomes")
            names = await store.query("SELECT name FROM system.columns WHERE database = 'monitoring' "
                                      "AND table = 'window_metrics' ORDER BY position")
            await store.close()
        return [rows, [n for (n,) in names]]

    rows, names = asyncio.run(start_twice())
    assert rows == [("r1", 0)]
    assert names[-1] == "label_delay_p90_s" and names == [line.split()[0] for line in
                                                   TABLES["window_metrics"].strip().splitlines()]
