"""`make demo`: the whole product on the embedded stack, start to finish.

Starts the local broker (or reuses it), creates this run's topics, starts the
worker with each model's own SLO (`examples/monitor.toml`, MONITOR_CONFIG) and the
scenarios' reference file (their labeled rows calibrate the estimated accuracy), replays
the `degradation`, `feature-drift` and `covariate-shift` scenarios, waits until the worker
has read every acknowledged message and refreshed its figures, prints accuracy per window
beside the accuracy estimated before labels, drift and alerts, stops the worker with SIGTERM, writes the
HTML report (`.data/demo/report.html`) and says how to query what it wrote.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from streams.settings import Settings, load_settings
from tools.broker import DEFAULT_HOST, free_port, port_answers, running_broker, start_broker
from tools.topics import create_topics, topic_env

SCENARIOS = ("degradation", "feature-drift", "covariate-shift")
SCENARIO_ARGS: dict[str, dict[str, Any]] = {"covariate-shift": {"periods": 10}}  # 2,500 predictions a window
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "examples" / "monitor.toml"  # each model's own SLO
console = Console(width=None if sys.stdout.isatty() else 150)


def demo_env(run_id: str, bootstrap: str, store: Path, web_port: int) -> dict[str, str]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CLICKHOUSE_URL": f"chdb://{store.resolve()}",
        **topic_env(run_id),
        "MONITOR_APP_ID": run_id,
        "MONITOR_WEB_PORT": str(web_port),
        "MONITOR_DATA_DIR": str(store.parent / "worker"),
        "LABEL_GRACE_SECONDS": os.environ.get("LABEL_GRACE_SECONDS", "21600"),
        "MONITOR_IDLE_SECONDS": os.environ.get("MONITOR_IDLE_SECONDS", "3"),
        "MONITOR_CONFIG": os.environ.get("MONITOR_CONFIG") or str(DEMO_CONFIG),
    }
    return env


def _status(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as response:
            return orjson.loads(response.read())
    except OSError:
        return None


def _caught_up_in_event_time(port: int) -> bool:
    status = _status(port) or {}
    return bool(status) and all(v["watermark_ms"] >= v["max_event_ms"] for v in status["versions"].values()) and (
        status["refreshed_messages"] >= status["counters"]["messages"])


def _query(port: int, sql: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/query", data=sql.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        body = orjson.loads(response.read())
    return [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]


def _wait(what: str, check, timeout: float, worker: subprocess.Popen, log: Path) -> Any:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    with console.status(what):
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                console.print(f"[red]The worker exited ({worker.returncode}); its log ends with:[/red]")
                console.print("\n".join(log.read_text(errors="replace").splitlines()[-30:]))
                raise SystemExit(1)
            result = check()
            if result:
                return result
            time.sleep(0.5)
    raise SystemExit(f"demo: timed out: {what}")


def _broker(settings: Settings, data_dir: Path) -> str:
    running = running_broker(data_dir)
    if running is not None:
        console.print(f"Local broker already running on {running.bootstrap}")
        return running.bootstrap
    port = 9092 if not port_answers(DEFAULT_HOST, 9092) else free_port()
    broker = start_broker(port, DEFAULT_HOST, data_dir=data_dir, detached=True)
    console.print(f"Started the local Tansu broker on {broker.bootstrap} (log: {broker.log_path})")
    return broker.bootstrap


def _replay(settings: Settings) -> int:
    from producers.replay import replay
    from producers.scenarios import generate

    total = 0
    for name in SCENARIOS:
        scenario = generate(name, **SCENARIO_ARGS.get(name, {}))
        result = replay(enumerate(scenario.rows, start=1), settings)
        if not result.ok:
            raise SystemExit(f"demo: replay of {name} failed: {result.first_error}")
        counts = ", ".join(f"{topic}: {n}" for topic, n in result.acknowledged.items())
        console.print(f"Replayed [bold]{name}[/bold] ({scenario.rows[0]['model']}): {counts} "
                      f"({result.events_per_second:,.0f} events/s)")
        total += result.events
    return total


def _write_reference(path: Path) -> Path:
    """The demo scenarios' reference rows, one reference per model version (REFERENCE_PATH)."""
    from producers.scenarios import generate

    with path.open("wb") as out:
        for name in SCENARIOS:
            s = generate(name, **SCENARIO_ARGS.get(name, {}))
            for row in s.reference:
                out.write(orjson.dumps({**row, "model": s.model, "model_version": s.model_version}) + b"\n")
    return path


def _estimated(r: dict[str, Any], threshold: float) -> str:
    """The estimate before labels and its 95% interval; red when the interval lies below the SLO."""
    if r["estimated_accuracy"] is None:
        return "-"
    text = f"{r['estimated_accuracy']:.3f} [{r['estimated_accuracy_low']:.3f}-{r['estimated_accuracy_high']:.3f}]"
    return f"[red]{text}[/red]" if r["estimated_accuracy_high"] < threshold else text


def _print_accuracy(port: int, settings: Settings) -> None:
    rows = _query(port, "SELECT model, model_version, window_start, predictions, labeled, accuracy, "
                        "estimated_accuracy, estimated_accuracy_low, estimated_accuracy_high, "
                        "rolling_accuracy, final FROM monitoring.window_metrics FINAL "
                        "ORDER BY model, model_version, window_start")
    table = Table(title="Accuracy per window (red: below the model's own SLO, MONITOR_CONFIG) and the accuracy "
                        "estimated from the scores before labels (95% interval)")
    for column in ("model", "window", "predictions", "labeled", "accuracy", "SLO", "estimated", "rolling", "final"):
        table.add_column(column, justify="right" if column not in ("model", "window") else "left")
    for r in rows:
        accuracy = r["accuracy"]
        slo = settings.for_model(r["model"], r["model_version"]).accuracy_threshold
        shown = "-" if accuracy is None else f"{accuracy:.3f}"
        if accuracy is not None and accuracy < slo:
            shown = f"[red]{shown}[/red]"
        rolling = "-" if r["rolling_accuracy"] is None else f"{r['rolling_accuracy']:.3f}"
        table.add_row(f"{r['model']}/{r['model_version']}", str(r["window_start"])[5:16], str(r["predictions"]),
                      str(r["labeled"]), shown, f"{slo:.0%}", _estimated(r, slo), rolling,
                      "yes" if r["final"] else "")
    console.print(table)


def _print_drift(port: int) -> None:
    rows = _query(port, "SELECT model, window_start, feature, psi, band FROM monitoring.feature_drift FINAL "
                        "ORDER BY model, window_start, feature")
    features = sorted({r["feature"] for r in rows})
    table = Table(title="PSI per window against the reference (yellow: small change, red: drift)")
    table.add_column("model")
    table.add_column("window")
    for feature in features:
        table.add_column(feature, justify="right")
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for r in rows:
        psi = r["psi"]
        text = "-" if psi is None else f"{psi:.3f}"
        color = {"small": "yellow", "drift": "red"}.get(r["band"])
        cells.setdefault((r["model"], str(r["window_start"])[5:16]), {})[r["feature"]] = (
            f"[{color}]{text}[/{color}]" if color else text)
    for (model, window), values in cells.items():
        table.add_row(model, window, *(values.get(f, "") for f in features))
    console.print(table)


def _print_alerts(port: int) -> None:
    rows = _query(port, "SELECT status, severity, type, model, model_version, subject, window_start, value "
                        "FROM monitoring.alerts FINAL ORDER BY model, window_start, type")
    table = Table(title=f"Alerts ({len(rows)})")
    for column in ("window", "status", "severity", "type", "model", "subject", "value"):
        table.add_column(column, no_wrap=True)
    for r in rows:
        tone = "green" if r["status"] == "resolved" else ("red" if r["severity"] == "critical" else "yellow")
        value = "-" if r["value"] is None else f"{r['value']:.3f}"
        table.add_row(str(r["window_start"])[5:16], f"[{tone}]{r['status']}[/{tone}]", r["severity"], r["type"],
                      f"{r['model']}/{r['model_version']}", r["subject"], value)
    console.print(table)


def _write_report(settings: Settings, path: Path) -> None:
    """The HTML report of what the worker wrote (python -m sinks.report), next to the demo's store."""
    from sinks.query import QueryError
    from sinks.report import ReportError, write_report

    try:
        write_report(settings, path)
    except (ReportError, QueryError, OSError) as err:
        console.print(f"[red]report: {err}[/red]")
        return
    console.print(f"HTML report: {path.resolve()}")


def main() -> int:
    started = time.monotonic()
    base = load_settings()
    data_dir = Path(base.data_dir)
    run_id = "demo-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    store = data_dir / "demo" / "clickhouse"
    shutil.rmtree(store.parent, ignore_errors=True)
    store.parent.mkdir(parents=True)
    bootstrap = _broker(base, data_dir)
    web_port = base.web_port if not port_answers("127.0.0.1", base.web_port) else free_port()
    env = demo_env(run_id, bootstrap, store, web_port)
    if not os.environ.get("REFERENCE_PATH"):
        env["REFERENCE_PATH"] = str(_write_reference(store.parent / "reference.jsonl").resolve())
    settings = load_settings({**os.environ, **env})
    created = create_topics(settings)
    console.print(f"Created topics: {', '.join(created)}")

    log = store.parent / "worker.log"
    worker = subprocess.Popen([str(Path(sys.executable).parent / "faust"), "-A", "streams.app", "worker", "-l",
                               "info", "--web-port", str(web_port)], env={**os.environ, **env},
                              stdout=log.open("wb"), stderr=subprocess.STDOUT)
    console.print(f"Started the worker: faust -A streams.app worker (log: {log})")
    try:
        _wait("Waiting for the worker to join its consumer group",
              lambda: (_status(web_port) or {}).get("started"), 120, worker, log)
        total = _replay(settings)
        _wait(f"Waiting until the worker has read all {total:,} messages and refreshed its figures",
              lambda: (_status(web_port) or {}).get("refreshed_messages", 0) >= total, 300, worker, log)
        _wait("Waiting for the input partitions to go idle so the watermark reaches the last event",
              lambda: _caught_up_in_event_time(web_port), 120, worker, log)
        _print_accuracy(web_port, settings)
        _print_drift(web_port)
        _print_alerts(web_port)
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
    console.print(f"Worker stopped (exit code {code}); the demo took {time.monotonic() - started:.0f} s.")
    _write_report(settings, store.parent / "report.html")
    console.print(
        "\nQuery the results (the worker wrote them to the embedded ClickHouse store):\n"
        f"  CLICKHOUSE_URL={env['CLICKHOUSE_URL']} .venv/bin/python -m sinks.query \\\n"
        "    \"SELECT window_start, accuracy, final FROM monitoring.window_metrics FINAL ORDER BY window_start\"\n"
        f"Follow alerts: KAFKA_BOOTSTRAP_SERVERS={bootstrap} TOPIC_ALERTS={env['TOPIC_ALERTS']} "
        ".venv/bin/python -m streams.alerts --from-beginning\n"
        "Stop the local broker: make down")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
