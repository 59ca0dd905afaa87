"""kill -9 in the middle of a backlog, three times: the final figures equal an uninterrupted run's.

Facts are written before offsets are committed and keyed by request_id, and a
restarted worker rebuilds its memory from them (skipping messages up to the
offsets already persisted), so nothing is lost and nothing is counted twice. Bad
messages sit in the middle of the backlog, where the kills fall: each still reaches
the DLQ (at least once, as its original bytes) before its offset is committed.
"""

from __future__ import annotations

import random

import pytest

from streams.settings import load_settings
from tests.figures_snapshot import comparison_env, replay_scenarios, snapshot, uninterrupted
from tests.hostile import hostile_message
from tests.kafka_helpers import consume_all, produce
from tests.worker_harness import WorkerRun
from tools.topics import create_topics

pytestmark = pytest.mark.integration
HOSTILE_PER_TOPIC = 120


def _hostile_backlog(bootstrap: str, topics: dict[str, str]) -> list[tuple[str, bytes]]:
    """HOSTILE_PER_TOPIC rejected messages on each input topic: (topic, value) of each."""
    rng = random.Random(23)
    sent: list[tuple[str, bytes]] = []
    for topic, base in ((topics["TOPIC_PREDICTIONS"], {"model": "m", "prediction": 1, "features": {"x": 1}}),
                        (topics["TOPIC_GROUND_TRUTH"], {"label": 1})):
        messages = [hostile_message(rng, {"request_id": f"bad-{i}", "timestamp": "2026-01-05T01:00:00Z", **base})
                    for i in range(HOSTILE_PER_TOPIC)]
        produce(bootstrap, topic, messages)
        sent += [(topic, value) for _key, value in messages]
    return sent


@pytest.fixture(scope="module")
def replayed(broker):
    """Two scenarios with bad messages between them: (topics, messages, the bad ones)."""
    topics, first = replay_scenarios(broker.bootstrap, "crash-recovery", {"degradation": 8000})
    bad = _hostile_backlog(broker.bootstrap, topics)
    topics, second = replay_scenarios(broker.bootstrap, "crash-recovery", {"sudden-drift": 8000}, topics=topics)
    return topics, first + len(bad) + second, bad


def _dead_letters(bootstrap: str, topic: str, expected: int) -> dict[tuple[str, str, str], tuple[str, bytes]]:
    """The DLQ by source (topic, partition, offset) -> (source topic, original value): a message
    sent again after a kill counts once, and must carry the same bytes."""
    letters: dict[tuple[str, str, str], tuple[str, bytes]] = {}
    for message in consume_all(bootstrap, topic, expected=expected, timeout=60):
        headers = {k: v.decode() for k, v in message.headers()}
        assert headers["dlq.reason"] and headers["dlq.error"]
        source = (headers["dlq.source.topic"], headers["dlq.source.partition"], headers["dlq.source.offset"])
        letter = (source[0], message.value() or b"")
        assert letters.setdefault(source, letter) == letter
    return letters


def test_three_kills_give_the_figures_of_an_uninterrupted_run(broker, replayed, tmp_path_factory):
    topics, total, bad = replayed
    want = uninterrupted(broker.bootstrap, topics, total, tmp_path_factory)

    workdir = tmp_path_factory.mktemp("crashy")
    own_dlq = f"{topics['TOPIC_DLQ']}-crashy"
    env = comparison_env(broker.bootstrap, topics, workdir, TOPIC_DLQ=own_dlq)
    create_topics(load_settings({**topics, "TOPIC_DLQ": own_dlq, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}))
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
    letters = _dead_letters(broker.bootstrap, own_dlq, len(bad))
    assert sorted(letters.values()) == sorted(bad)
