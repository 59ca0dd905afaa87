"""kill -9 in the middle of a backlog, three times: the final figures equal an uninterrupted run's.

Facts are written before offsets are committed and keyed by request_id, and a
restarted worker rebuilds its memory from them (skipping messages up to the
offsets already persisted), so nothing is lost and nothing is counted twice.
"""

from __future__ import annotations

import pytest

from tests.figures_snapshot import comparison_env, replay_scenarios, snapshot, uninterrupted
from tests.worker_harness import WorkerRun

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def replayed(broker):
    return replay_scenarios(broker.bootstrap, "crash-recovery", {"degradation": 8000, "sudden-drift": 8000})



def test_three_kills_give_the_figures_of_an_uninterrupted_run(broker, replayed, tmp_path_factory):
    topics, total = replayed
    want = uninterrupted(broker.bootstrap, topics, total, tmp_path_factory)

    workdir = tmp_path_factory.mktemp("crashy")
    env = comparison_env(broker.bootstrap, topics, workdir)
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
