"""Run the real worker (`faust -A streams.app worker`) as a subprocess, for end-to-end tests.

Caught up is decided from the worker's own counters (its /status page), never from
broker watermarks, which the local broker reports wrongly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import clickhouse_connect

from tools.broker import free_port

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class WorkerRun:
    env: dict[str, str]
    workdir: Path
    process: subprocess.Popen | None = None
    app_module: str = "streams.app"
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"worker-{self.env['MONITOR_WEB_PORT']}.log"

    @property
    def store_path(self) -> Path:
        return Path(self.env["CLICKHOUSE_URL"][len("chdb://"):])

    def start(self) -> WorkerRun:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "faust"), "-A", self.app_module, "worker", "-l", "info",
             "--web-port", self.env["MONITOR_WEB_PORT"]],
            cwd=self.workdir, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
        )
        return self

    def status(self) -> dict[str, Any] | None:
        url = f"http://127.0.0.1:{self.env['MONITOR_WEB_PORT']}/status"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            return None

    def wait_for_messages(self, expected: int, timeout: float = 120.0, settle: float = 2.5) -> dict[str, Any]:
        """Until the worker has read `expected` input messages, then `settle` seconds for a refresh."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            last = self.status()
            if last and last["counters"]["messages"] >= expected:
                time.sleep(settle)
                return self.status() or last
            time.sleep(0.5)
        raise AssertionError(f"worker read {last and last['counters']} of {expected} messages:\n{self.log_tail()}")

    def wait_until_settled(self, expected: int, timeout: float = 180.0,
                           counted_since_start: bool = False) -> dict[str, Any]:
        """Every message read and refreshed, and each model version's watermark at its last event
        (input partitions drained): from then on nothing changes until new input arrives.

        After a restart the worker counts only what it read since: pass ``counted_since_start``
        to wait instead until every input partition is drained."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            status = self.status()
            enough = status and (status["drained"] if counted_since_start else
                                 status["refreshed_messages"] >= expected)
            if enough and status["refreshed_messages"] >= status["counters"]["messages"] and all(
                    v["watermark_ms"] >= v["max_event_ms"] for v in status["versions"].values()):
                return status
            time.sleep(0.5)
        raise AssertionError(f"worker did not settle ({status}):\n{self.log_tail()}")

    def stop(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"worker did not stop on SIGTERM:\n{self.log_tail()}") from None

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def cli(self, module: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run one of the project's commands with this worker's settings."""
        return subprocess.run([sys.executable, "-m", module, *args], cwd=self.workdir, env={**os.environ, **self.env},
                              capture_output=True, text=True, timeout=timeout)

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def query(self, sql: str) -> list[tuple]:
        """Ask the worker's ClickHouse: a server at any time, the embedded store only once the
        worker has stopped."""
        url = self.env["CLICKHOUSE_URL"]
        client = (clickhouse_connect.get_client(dsn=url) if url.startswith("http")
                  else clickhouse_connect.get_client(dsn=f"chdb://{self.store_path}"))
        try:
            return client.query(sql).result_rows
        finally:
            client.close()


def worker_env(bootstrap: str, topics: dict[str, str], workdir: Path, **extra: Any) -> dict[str, str]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CLICKHOUSE_URL": f"chdb://{(workdir / 'clickhouse').resolve()}",
        "MONITOR_APP_ID": f"monitor-{workdir.name}",
        "MONITOR_WEB_PORT": str(free_port()),
        "MONITOR_DATA_DIR": str(workdir / "data"),
        "MONITOR_REBALANCE_TIMEOUT": "3",
        "MONITOR_SESSION_TIMEOUT": "6",
        **topics,
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env
