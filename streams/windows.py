"""Event-time tumbling windows aligned to the Unix epoch, in integer milliseconds.

A request belongs to the window holding its prediction timestamp; a window is
*closed* once the watermark reaches its end (no more predictions expected) and
*final* once the watermark passes its end plus the label grace period.

>>> window_start_ms(1_767_225_600_123, 3600)
1767225600000
>>> window_start_ms(1_767_229_199_999, 3600), window_start_ms(1_767_229_200_000, 3600)
(1767225600000, 1767229200000)
>>> is_final(0, watermark_ms=3_600_000 + 60_000, window_seconds=3600, grace_seconds=60)
False
>>> is_final(0, watermark_ms=3_600_000 + 60_001, window_seconds=3600, grace_seconds=60)
True
"""

from __future__ import annotations


def window_start_ms(ts_ms: int, window_seconds: int) -> int:
    """``floor(ts / WINDOW_SECONDS) * WINDOW_SECONDS``, exactly, in milliseconds."""
    size = window_seconds * 1000
    return (ts_ms // size) * size


def window_end_ms(start_ms: int, window_seconds: int) -> int:
    return start_ms + window_seconds * 1000


def is_closed(start_ms: int, watermark_ms: int, window_seconds: int) -> bool:
    """No prediction of this window is expected any more: the watermark reached its end."""
    return watermark_ms >= window_end_ms(start_ms, window_seconds)


def is_final(start_ms: int, watermark_ms: int, window_seconds: int, grace_seconds: int) -> bool:
    """The watermark has passed window_end + LABEL_GRACE_SECONDS (strictly)."""
    return watermark_ms > window_end_ms(start_ms, window_seconds) + grace_seconds * 1000
