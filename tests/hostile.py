"""Messages the worker must reject, one of each way a producer can get a message wrong.

Shared by the hostile-input test (thousands, beside good ones) and the crash test (a few
hundred in the middle of a backlog read across kill -9s): each must reach the DLQ.
"""

from __future__ import annotations

import random

import orjson

KINDS = 14


def hostile_message(rng: random.Random, base: dict) -> tuple[bytes, bytes]:
    """(key, value) of one message that must be rejected, made from the valid event ``base``."""
    rid = base["request_id"]
    key = rid.encode()
    kind = rng.randrange(KINDS)
    if kind == 0:
        return key, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))  # random bytes
    if kind == 1:
        return key, orjson.dumps(base)[: rng.randrange(1, 20)]  # truncated JSON
    if kind == 2:
        return key, b"\xc3\x28" + orjson.dumps(base)  # invalid UTF-8
    if kind == 3:
        return key, b'{"request_id": "' + rid.encode() + b'", "timestamp": NaN}'
    if kind == 4:
        return key, b"[" * 3000 + b"]" * 3000  # deep nesting
    if kind == 5:
        return key, orjson.dumps({**base, "timestamp": "2999-01-01T00:00:00Z"})  # far future
    if kind == 6:
        return key, orjson.dumps({**base, "timestamp": 12})  # far past
    if kind == 7:
        return b"someone-else", orjson.dumps(base)  # key and request_id disagree
    if kind == 8:
        return key, orjson.dumps({k: v for k, v in base.items() if k != "timestamp"})  # missing field
    if kind == 9:
        return key, orjson.dumps({**base, "request_id": 12345})  # wrong type
    if kind == 10:
        return key, orjson.dumps({**base, "request_id": "r" * 5000})  # huge string
    if kind == 11:
        return key, b'{"request_id": "' + b"x" * 900_000 + b'"}'  # ~1 MB value
    if kind == 12:
        return key, orjson.dumps(rng.choice([1, "text", None, True, 2.5]))  # not an object
    return key, orjson.dumps({**base, "timestamp": {"nested": [1, {"deep": True}]}})  # wrong type
