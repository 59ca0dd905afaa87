"""The worker refuses to start, with one clear line, on a setup that cannot work."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

pytestmark = pytest.mark.integration
FAUST = str(Path(sys.executable).parent / "faust")


def _worker(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    import os
    return subprocess.run([FAUST, "-A", "streams.app", "worker", "-l", "info"], env={**os.environ, **env},
                          cwd=cwd, capture_output=True, text=True, timeout=60)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_bad_setting_stops_with_one_line(tmp_path):
    done = _worker({"WINDOW_SECONDS": "-5"}, tmp_path)
    assert done.returncode == 2
    assert _lines(done.stderr) == [
        "model-monitor: WINDOW_SECONDS='-5' is not valid: expected an integer between 1 and 31622400"]


def test_missing_input_topic_stops_with_one_line(broker, tmp_path):
    name = f"absent-{uuid.uuid4().hex[:8]}"
    done = _worker({"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "TOPIC_PREDICTIONS": name}, tmp_path)
    assert done.returncode == 1
    lines = _lines(done.stderr)
    assert len(lines) == 1 and f"'{name}' does not exist" in lines[0]


def test_unequal_partition_counts_stop_with_one_line(broker, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for future in admin.create_topics([NewTopic(f"p-{suffix}", 4, 1), NewTopic(f"g-{suffix}", 2, 1)]).values():
        future.result()
    done = _worker({"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "TOPIC_PREDICTIONS": f"p-{suffix}",
                    "TOPIC_GROUND_TRUTH": f"g-{suffix}"}, tmp_path)
    assert done.returncode == 1
    assert _lines(done.stderr) == [
        f"model-monitor: p-{suffix} has 4 partitions but g-{suffix} has 2: both input topics need the same "
        "count so both halves of a request meet in one partition"]
