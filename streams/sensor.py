"""Faust's statistics sensor without its per-event bookkeeping.

Faust's default ``Monitor`` sensor updates several counters, a time stamp and a
dict per message and per stream event: at thousands of events per second that is
a measurable share of the worker's time, for statistics nothing here reads (the
monitor exports its own per-batch metrics, see :mod:`streams.observability`). The
other hooks (offsets, commits, rebalances) are kept.
"""

from __future__ import annotations

from typing import Any

from faust.sensors import Monitor


class LeanMonitor(Monitor):
    """Faust's Monitor with the four per-event hooks turned off."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None
