"""Where a wide prediction's cost goes in the worker: a py-spy profile and CPU per thread.

Not a benchmark (no rate is compared): the `stable` scenario's requests with ``--width``
numeric and three categorical features per prediction (as in bench_features) are produced
once; the full worker reads them while py-spy samples its Python threads, and the CPU
seconds of every thread (Python's and the embedded ClickHouse engine's, from /proc) are
read before and after. Prints the CPU split by thread name and the Python frames with the
largest share of samples (inclusive and self), the figures BENCHMARKS.md's "Per-feature
cost" section quotes.

    .venv/bin/python -m benchmarks.profile_features --width 300 --events 60000
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_features import wide_rows
from benchmarks.common import (
    faust_process,
    fresh_topics,
    local_broker,
    log,
    produce_scenario,
    scenario_rows,
    wait_read,
)

OWN_CODE = ("(streams/", "(sinks/")  # py-spy names a frame "function (path:line)": the worker and its store


def thread_cpu(pid: int) -> dict[tuple[str, str], float]:
    """CPU seconds (user + system) of every thread of a process, keyed by (thread id, name)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[tuple[str, str], float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        out[(tid, name)] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def cpu_by_name(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> collections.Counter:
    """CPU seconds spent between two readings, summed by thread name.

    >>> cpu_by_name({("1", "faust"): 1.0}, {("1", "faust"): 3.0, ("2", "ThreadPool"): 0.5})
    Counter({'faust': 2.0, 'ThreadPool': 0.5})
    """
    spent: collections.Counter = collections.Counter()
    for key, seconds in after.items():
        spent[key[1]] += seconds - before.get(key, 0.0)
    return spent


def frame_shares(raw_lines: list[str]) -> tuple[int, collections.Counter, collections.Counter]:
    """(samples, inclusive, self) from py-spy's raw format: one ``frame;frame;... count`` per line.
    A line without a count is skipped: py-spy, reading a frame while the worker changes it, once
    wrote a name with a line break in it (the rest of the stack on a line of its own).

    >>> total, inclusive, own = frame_shares(["a;b 3", "a;c 1", "x ("])
    >>> total, inclusive["a"], own["b"], own["c"]
    (4, 4, 3, 1)
    """
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for line in raw_lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return total, inclusive, own


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=300, help="numeric features per prediction")
    parser.add_argument("--events", type=int, default=60_000, help="about this many input events")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=30, help="frames listed")
    args = parser.parse_args(argv)
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        print(f"py-spy is not installed in this environment ({spy}): pip install py-spy", file=sys.stderr)
        return 2
    with local_broker("profile-features-") as (broker, data):
        rows = wide_rows(scenario_rows("stable", args.events), args.width, 3)
        topics, settings = fresh_topics(broker.bootstrap, f"profile{args.width}")
        total = produce_scenario(settings, rows).events
        del rows
        out = Path(tempfile.mkdtemp(prefix="profile-features-")) / "samples.txt"
        with faust_process("streams.app", broker.bootstrap, topics, data / "worker") as run:
            assert run.process is not None
            while not ((status := run.status()) and status["counters"]["messages"]):
                time.sleep(0.1)
            before = thread_cpu(run.process.pid)
            sampler = subprocess.Popen([str(spy), "record", "-p", str(run.process.pid), "-o", str(out),
                                        "--format", "raw", "-r", str(args.rate), "--nonblocking"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            status = wait_read(run, total, f"{args.width} features")
            sampler.send_signal(signal.SIGINT)
            sampler.wait()
            time.sleep(2)  # the last write lands
            spent = cpu_by_name(before, thread_cpu(run.process.pid))
    rate = status["counters"]["messages"] / (status["last_message_at"] - status["first_message_at"])
    cpu = sum(spent.values())
    print(f"{args.width} numeric + 3 categorical features, {total:,} events, {rate:,.0f} events/s; "
          f"worker CPU {cpu:.1f} s ({cpu / total * 1e6:,.0f} us per event)")
    for name, seconds in spent.most_common(8):
        print(f"  {seconds:7.2f} s {seconds / cpu:6.1%}  thread {name}")
    samples, inclusive, own = frame_shares(out.read_text().splitlines())
    log(f"{samples:,} samples in {out}")
    ours = collections.Counter({frame: n for frame, n in inclusive.items() if any(code in frame for code in OWN_CODE)})
    for title, counter in (("inclusive, the project's frames", ours), ("self", own)):
        print(f"Python frames, {title} (share of samples):")
        for frame, n in counter.most_common(args.top):
            print(f"  {n / samples:6.1%}  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
