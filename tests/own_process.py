"""Run a test module as a script in a process of its own and return what it printed.

The embedded ClickHouse (chDB) opens one store per process, and other tests of the session
open one of their own: tests that drive a real Monitor on ``chdb://memory`` do it in a
subprocess that runs their file's ``__main__`` part.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_script(path: str | Path, timeout: float = 180) -> str:
    """stdout of ``python path`` with the project importable; fails the test on a non-zero exit."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(path)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout
