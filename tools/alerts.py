"""Follow the alerts topic: `python -m streams.alerts [--json] [--from-beginning]`.

One readable line per alert event (or the raw JSON with --json), until Ctrl-C.
On a real cluster any Kafka consumer works too (``kcat -C -t alerts``); on the
local Tansu broker use this follower (Debian's kcat cannot talk to it).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition

from streams.kafka_config import confluent_config
from streams.settings import Settings, SettingsError, load_settings

COLORS = {"critical": "\033[31m", "warning": "\033[33m", "resolved": "\033[32m"}
RESET = "\033[0m"


def format_alert(alert: dict[str, Any], *, color: bool = False) -> str:
    """One line: when, status, severity, type, model/version, subject, value and the sentence.

    >>> format_alert({"detected_at": "2026-01-01T05:00:00.000Z", "status": "firing", "severity": "critical",
    ...     "type": "accuracy_below_threshold", "model": "m", "model_version": "v1", "subject": "accuracy",
    ...     "window_start": "2026-01-01T04:00:00.000Z", "value": 0.8, "message": "Accuracy is 80.0%."})
    '2026-01-01T05:00:00.000Z FIRING   critical accuracy_below_threshold m/v1 accuracy window 2026-01-01T04:00:00.000Z value 0.8000: Accuracy is 80.0%.'
    """
    status = str(alert.get("status", "?"))
    value = alert.get("value")
    shown = f"{value:.4f}" if isinstance(value, int | float) else "-"
    line = (
        f"{alert.get('detected_at', '?')} {status.upper():<8} {alert.get('severity', '?')} {alert.get('type', '?')} "
        f"{alert.get('model', '?')}/{alert.get('model_version', '?')} {alert.get('subject', '?')} "
        f"window {alert.get('window_start') or '-'} value {shown}: {alert.get('message', '')}"
    )
    if color:
        tone = COLORS["resolved"] if status == "resolved" else COLORS.get(str(alert.get("severity")), "")
        return f"{tone}{line}{RESET}"
    return line


def follow(bootstrap: str, topic: str, *, from_beginning: bool, as_json: bool, max_messages: int | None,
           idle_exit_s: float | None, settings: Settings | None = None) -> int:
    consumer = Consumer({
        **confluent_config(settings or Settings(), bootstrap=bootstrap),
        "group.id": f"alerts-follower-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.auto.commit": False,
    })
    # Assign every partition directly: no consumer-group join to wait for.
    metadata = consumer.list_topics(topic, timeout=10)
    if topic not in metadata.topics or metadata.topics[topic].error is not None:
        print(f"alerts: topic '{topic}' does not exist on {bootstrap}", file=sys.stderr)
        consumer.close()
        return 1
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    consumer.assign([TopicPartition(topic, p, start) for p in metadata.topics[topic].partitions])
    seen = 0
    idle = 0.0
    color = sys.stdout.isatty()
    try:
        while max_messages is None or seen < max_messages:
            msg = consumer.poll(0.5)
            if msg is None:
                idle += 0.5
                if idle_exit_s is not None and idle >= idle_exit_s:
                    break
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    print(f"alerts: {msg.error()}", file=sys.stderr)
                continue
            idle = 0.0
            seen += 1
            raw = msg.value() or b""
            if as_json:
                print(raw.decode("utf-8", "replace"), flush=True)
                continue
            try:
                print(format_alert(orjson.loads(raw), color=color), flush=True)
            except orjson.JSONDecodeError:
                print(f"(not an alert event) {raw[:200]!r}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.alerts", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print each alert event as its JSON")
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest alert on the topic")
    parser.add_argument("--max", type=int, default=None, help="stop after this many alerts")
    parser.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS",
                        help="stop after this long without a new alert")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as err:
        print(f"alerts: {err}", file=sys.stderr)
        return 2
    return follow(settings.kafka_bootstrap_servers, settings.topic_alerts, from_beginning=args.from_beginning,
                  as_json=args.json, max_messages=args.max, idle_exit_s=args.idle_exit, settings=settings)


if __name__ == "__main__":
    sys.exit(main())
