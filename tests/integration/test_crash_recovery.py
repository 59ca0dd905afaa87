"""kill -9 in the middle of a backlog, three times: the final figures equal an uninterrupted run's.

Facts are written before offsets are committed and keyed by request_id, and a
restarted worker rebuilds its memory from them (skipping messages up to the
offsets already persisted), so nothing is lost and nothing is counted twice.
"""

from __future__ import annotations

import pytest

from tests.figures_snapshot import snapshot
from tests.kafka_helpers import unique_topics
from tests.worker_harness import WorkerRun, worker_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def replayed(broker, tmp_path_factory):
    from producers.replay import replay
    from producers.scenarios import generate
    from streams.settings import load_settings

    topics = unique_topics("crash-recovery")
    settings = load_settings({**topics, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap})
    total = 0
    for name in ("degradation", "sudden-drift"):
        result = replay(enumerate(generate(name, rows=8000).rows, start=1), settings)
        assert result.ok
        total += result.events
    return topics, total


def _env(broker, topics, workdir):
    return worker_env(broker.bootstrap, topics, workdir, LABEL_GRACE_SECONDS=43_200, MONITOR_IDLE_SECONDS=2)


def test_three_kills_give_the_figures_of_an_uninterrupted_run(broker, replayed, tmp_path_factory):
    topics, total = replayed
    calm = WorkerRun(_env(broker, topics, tmp_path_factory.mktemp("calm")), tmp_path_factory.mktemp("calm-log"))
    calm.start().wait_until_settled(total)
    assert calm.stop() == 0
    want = snapshot(calm)

    workdir = tmp_path_factory.mktemp("crashy")
    env = _env(broker, topics, workdir)
    crashy = WorkerRun(env, workdir)
    for reads in (total // 4, total // 5, total // 6):  # each life reads this much more, then kill -9
        crashy.start().wait_for_messages(reads, settle=0)
        crashy.kill()
    crashy.start().wait_until_settled(total, counted_since_start=True)
    assert crashy.stop() == 0
    got = snapshot(crashy)

    assert got["outcomes"] == want["outcomes"]
    assert got["figures"] == want["figures"]
    assert got["drift"] == want["drift"]
    assert got["alerts"] == want["alerts"]
    assert "Recovered state" in crashy.log_tail(2000)
