"""Retraining trigger: run a command of yours for every firing alert that recommends retraining.

    python examples/retrain_trigger.py --command "python retrain.py" [--group retrain-trigger]
                                       [--seen-file .data/retrain-seen.txt] [--from-beginning]

A confluent-kafka consumer of the alerts topic (TOPIC_ALERTS), connected with the monitor's
own settings (KAFKA_BOOTSTRAP_SERVERS and the KAFKA_SECURITY_PROTOCOL / SASL / TLS variables).
For an alert with ``status == "firing"`` and ``recommended_action == "retrain"`` it runs the
command with the alert's JSON on standard input and ALERT_ID, ALERT_MODEL,
ALERT_MODEL_VERSION, ALERT_TYPE in the environment.

Delivery is at-least-once on both sides: the monitor may publish an alert again after a
crash (always with the same ``alert_id``), and this consumer commits an offset only after
the alert was handled, so a crash between the two sees it again. Alerts are therefore
deduplicated by ``alert_id`` (kept in memory, and in ``--seen-file`` across restarts). A
command that fails stops the consumer without committing: started again, it retries.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Container, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Decision:
    retrain: bool
    reason: str


def decide(alert: Any, seen: Container[str]) -> Decision:
    """Whether an alert event should trigger retraining, and why (pure: no Kafka, no clock).

    >>> alert = {"alert_id": "a1", "status": "firing", "recommended_action": "retrain", "model": "m"}
    >>> decide(alert, set())
    Decision(retrain=True, reason='firing retrain alert a1')
    >>> decide(alert, {"a1"}).reason
    'duplicate of a1'
    """
    if not isinstance(alert, Mapping) or not isinstance(alert.get("alert_id"), str) or not alert["alert_id"]:
        return Decision(False, "not an alert event")
    alert_id = alert["alert_id"]
    if alert_id in seen:
        return Decision(False, f"duplicate of {alert_id}")
    if alert.get("status") != "firing":
        return Decision(False, f"{alert.get('status')} alert {alert_id}")
    if alert.get("recommended_action") != "retrain":
        return Decision(False, f"{alert.get('recommended_action')} alert {alert_id}")
    return Decision(True, f"firing retrain alert {alert_id}")


def parse_alert(raw: bytes | None) -> Any:
    """The alert event's JSON, or None for a message that is not JSON."""
    try:
        return json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError):
        return None


class SeenIds:
    """The alert ids already handled: the newest ``limit`` in memory, all of them in an optional file."""

    def __init__(self, path: str | None = None, limit: int = 100_000) -> None:
        self.path = Path(path) if path else None
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()
        if self.path and self.path.is_file():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    self._remember(line.strip())

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._ids

    def _remember(self, alert_id: str) -> None:
        self._ids[alert_id] = None
        self._ids.move_to_end(alert_id)
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)

    def add(self, alert_id: str) -> None:
        self._remember(alert_id)
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(alert_id + "\n")


def run_command(command: str, alert: Mapping[str, Any], raw: bytes) -> int:
    """Run the user's command with the alert on stdin and its key fields in the environment."""
    env = {**os.environ, "ALERT_ID": str(alert["alert_id"]), "ALERT_MODEL": str(alert.get("model", "")),
           "ALERT_MODEL_VERSION": str(alert.get("model_version", "")), "ALERT_TYPE": str(alert.get("type", ""))}
    return subprocess.run(shlex.split(command), input=raw, env=env, check=False).returncode


def consume(command: str, *, group: str, seen: SeenIds, from_beginning: bool) -> int:
    from confluent_kafka import Consumer, KafkaError

    from streams.kafka_config import confluent_config
    from streams.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as err:
        print(f"retrain-trigger: {err}", file=sys.stderr)
        return 2
    consumer = Consumer({**confluent_config(settings), "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest" if from_beginning else "latest"})
    consumer.subscribe([settings.topic_alerts])
    print(f"retrain-trigger: following {settings.topic_alerts} on {settings.kafka_bootstrap_servers} "
          f"as group {group}", file=sys.stderr)
    try:
        while True:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    print(f"retrain-trigger: {msg.error()}", file=sys.stderr)
                continue
            raw = msg.value() or b""
            alert = parse_alert(raw)
            decision = decide(alert, seen)
            print(f"retrain-trigger: {decision.reason}: {'running command' if decision.retrain else 'skipped'}",
                  file=sys.stderr)
            if decision.retrain:
                code = run_command(command, alert, raw)
                if code != 0:
                    print(f"retrain-trigger: command exited {code}; stopping without committing, so the "
                          "alert is handled again on the next start", file=sys.stderr)
                    return 1
                seen.add(alert["alert_id"])
            consumer.commit(message=msg, asynchronous=False)  # only after the alert was handled
    except KeyboardInterrupt:
        return 0
    finally:
        consumer.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--command", required=True, help="command to run for each retrain alert (alert JSON on stdin)")
    parser.add_argument("--group", default="retrain-trigger", help="consumer group (default: %(default)s)")
    parser.add_argument("--seen-file", default=None, help="file of handled alert ids, kept across restarts")
    parser.add_argument("--from-beginning", action="store_true",
                        help="a new group starts at the oldest alert instead of the next one")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # `docker stop` / systemd: leave the group cleanly
    return consume(args.command, group=args.group, seen=SeenIds(args.seen_file), from_beginning=args.from_beginning)


if __name__ == "__main__":
    sys.exit(main())
