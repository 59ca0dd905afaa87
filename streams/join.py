"""Join of predictions and labels by request_id, whichever half arrives first.

The half that comes first waits in :class:`JoinState` until its partner arrives or
the event-time watermark passes its timestamp + JOIN_TTL_SECONDS. A pair matches
only when the two timestamps are at most JOIN_TTL_SECONDS apart, a rule that
depends on event times alone, so a replay joins exactly the same pairs.
Duplicates of a pending half, or of a recently joined request, are ignored.

A waiting half is held as one ``bytes`` value (see :class:`HalfCodec`): with a week's
TTL a million predictions may wait, and as dataclasses with their feature dicts they
would take several times the memory. Expiry finds the old halves through buckets by
event time (:class:`_ExpiryIndex`) instead of scanning everything that waits.

>>> from streams.records import Prediction, GroundTruth
>>> state = JoinState(ttl_ms=10_000)
>>> state.add_prediction(Prediction("r1", "m", "v1", 1_000, "1"))
>>> state.add_label(GroundTruth("r1", "0", 5_000)).correct
False
>>> state.add_label(GroundTruth("r1", "0", 5_000)) is DUPLICATE
True
"""

from __future__ import annotations

import heapq
import math
import struct
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import add, truediv
from typing import Any, Final, Generic, TypeVar, overload

import numpy as np

from streams.records import GroundTruth, Prediction


class _Duplicate:
    def __repr__(self) -> str:
        return "DUPLICATE"


DUPLICATE: Final = _Duplicate()
"""Returned when an event repeats a half that is pending or was joined recently."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """A prediction joined with its label."""

    prediction: Prediction
    label: GroundTruth

    @property
    def correct(self) -> bool:
        return self.prediction.prediction == self.label.label


# --- the compact form of a waiting half -------------------------------------------------

# Both heads start with ts_ms, so the expiry index reads it without decoding anything else.
_TS = struct.Struct("<q")
_PREDICTION_HEAD = struct.Struct("<qHH")  # ts_ms, (model, model_version) index, shape index
_LABEL_HEAD = struct.Struct("<qHH")  # ts_ms, (model, model_version) index, label class index
_INT64 = (-(2**63), 2**63 - 1)

MAX_PAIRS = 4096
"""Distinct (model, model_version) pairs interned; later ones wait uncompacted."""
MAX_CLASSES = 4096
"""Distinct classes (predicted or labelled) interned; later predicted ones are stored inline."""
MAX_CLASS_CHARS = 200
"""Longer classes are never interned (a hostile stream cannot fill the table with large strings)."""
MAX_SHAPES = 4096
"""Distinct shapes (field names and value codes) interned; later ones wait uncompacted."""
MAX_SHAPE_FIELDS = 100_000
"""Field names over all shapes: bounds the tables' memory whatever the names are."""

# One character per value, one struct item each. Scaled decimals: a float that is exactly
# m / 10**k for a small integer m (prices, scores, ages rounded to 2 or 4 digits) is stored as m
# in 2 or 4 bytes.
_FORMAT: Final = {
    "n": "0s",  # None: an empty item, no bytes
    "?": "?",  # bool
    "b": "b", "h": "h", "i": "i", "q": "q",  # int in 1, 2, 4, 8 bytes
    "A": "h", "E": "i",  # float = m / 10_000, m in 2 or 4 bytes
    "B": "h", "F": "i",  # float = m / 100, m in 2 or 4 bytes
    "d": "d",  # any other float
    "s": "B", "S": "H",  # str: its UTF-8 length here, the bytes after the fixed part
    "C": "H",  # the predicted class as an interned index
}
_I16, _I32 = 32_767, 2_147_483_647

T = TypeVar("T", bound=Hashable)


class Interner(Generic[T]):
    """Values <-> small indexes, at most ``capacity`` values: a table hostile input cannot grow."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0 or capacity > 65_536:
            msg = f"capacity must be between 0 and 65536 (a 2-byte index), got {capacity}"
            raise ValueError(msg)
        self.capacity = capacity
        self.index: dict[T, int] = {}
        self.values: list[T] = []

    def get(self, value: T) -> int | None:
        """The value's index, a new one while there is room, else None."""
        i = self.index.get(value)
        if i is None and len(self.values) < self.capacity:
            i = self.index[value] = len(self.values)
            self.values.append(value)
        return i

    def __len__(self) -> int:
        return len(self.values)


def _encode_values(values: Iterable[Any], codes: list[str], items: list[Any], tail: list[bytes]) -> bool:
    """Append each value's smallest exact code, struct item and string bytes.

    False when a value has no exact code: NaN (a decoded NaN would not equal the original),
    ints beyond int64, strings over 64 KiB, other types. Exact means bit for bit: m / 10**k
    is correctly rounded, so when it equals x (and x is not -0.0) decoding gives x back."""
    code, item = codes.append, items.append
    for v in values:
        kind = type(v)
        if kind is float:
            if -200_000.0 < v < 200_000.0 and (v != 0.0 or math.copysign(1.0, v) > 0.0):
                m4 = round(v * 10_000.0)
                if m4 / 10_000.0 == v and -_I16 <= m4 <= _I16:
                    code("A")
                    item(m4)
                    continue
                m2 = round(v * 100.0)
                if m2 / 100.0 == v and -_I16 <= m2 <= _I16:
                    code("B")
                    item(m2)
                elif m4 / 10_000.0 == v:
                    code("E")
                    item(m4)
                elif m2 / 100.0 == v:
                    code("F")
                    item(m2)
                else:
                    code("d")
                    item(v)
            elif v != v:
                return False
            elif -20_000_000.0 < v < 20_000_000.0 and v != 0.0 and round(v * 100.0) / 100.0 == v:
                code("F")
                item(round(v * 100.0))
            else:  # -0.0, infinities, large or long floats
                code("d")
                item(v)
        elif kind is int:
            if -128 <= v <= 127:
                code("b")
            elif -32_768 <= v <= _I16:
                code("h")
            elif -_I32 - 1 <= v <= _I32:
                code("i")
            elif _INT64[0] <= v <= _INT64[1]:
                code("q")
            else:
                return False
            item(v)
        elif kind is str:
            raw = v.encode("utf-8", "surrogatepass")
            if len(raw) > 65_535:
                return False
            code("s" if len(raw) <= 255 else "S")
            item(len(raw))
            tail.append(raw)
        elif v is None:
            code("n")
            item(b"")
        elif kind is bool:
            code("?")
            item(v)
        else:
            return False
    return True


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a packed prediction holds besides its head: value codes and the dicts' keys.

    Values in order: prediction, score, confidence, latency_ms, the scores' values (when
    ``score_names`` is not None), the features' values. The index lists say which struct
    items need a step after unpacking."""

    codes: str
    score_names: tuple[str, ...] | None
    feature_names: tuple[str, ...]
    fixed: struct.Struct
    by_10_000: tuple[int, ...]
    by_100: tuple[int, ...]
    strings: tuple[int, ...]
    nones: tuple[int, ...]
    wide: bool = False  # the features are not in ``codes``: they follow in the wide form (_encode_wide)

    @classmethod
    def of(cls, codes: str, score_names: tuple[str, ...] | None, feature_names: tuple[str, ...],
           wide: bool = False) -> _Shape:
        def where(chars: str) -> tuple[int, ...]:
            return tuple(i for i, c in enumerate(codes) if c in chars)

        fixed = struct.Struct("<" + "".join(_FORMAT[c] for c in codes))
        return cls(codes, score_names, feature_names, fixed, where("AE"), where("BF"), where("sS"), where("n"), wide)


# --- the wide form: many features, each value with its own code -------------------------
#
# A shape holds the code of every value, so with many features whose values change code
# (a price above 327.67 takes 4 bytes, below 2; a count passes 127) nearly every prediction
# makes a new shape: at 300 such features the shape tables filled after a few thousand
# predictions and the rest waited as objects, about 20 KB each. A feature set that needs more
# than SHAPES_PER_FEATURE_SET shapes therefore goes to the wide form: each value's code (the
# same codes and exactness as _encode_values) travels in the entry, 4 bits a value, the values
# follow grouped by code, and the shape is the feature names alone.

WIDE_FEATURES = 16
SHAPES_PER_FEATURE_SET = 16
"""A set of WIDE_FEATURES or more feature names that needs more shapes than this goes to the
wide form (values that keep changing code); until then its predictions pack as any other."""
_W_NONE, _W_FALSE, _W_TRUE, _W_STR8, _W_STR16 = 0, 1, 2, 3, 4
_W_I8, _W_I16, _W_I32, _W_I64 = 5, 6, 7, 8
_W_A, _W_B, _W_E, _W_F, _W_D = 9, 10, 11, 12, 13  # float = m / 10_000 (2, 4 bytes), m / 100 (2, 4), float64
_W_CODES = 14
_W_FORMAT: Final = ("", "", "", "B", "H", "b", "h", "i", "q", "h", "h", "i", "i", "d")  # struct item of each code
_W_DIVISOR: Final = {_W_A: 10_000.0, _W_B: 100.0, _W_E: 10_000.0, _W_F: 100.0}
_W_CONSTANT: Final = {_W_NONE: None, _W_FALSE: False, _W_TRUE: True}


def _encode_wide(values: list[Any]) -> tuple[bytes, ...] | None:
    """Codes (two a byte), grouped values and the strings' bytes of many feature values, or
    None when one has no exact code (see :func:`_encode_values`)."""
    codes = bytearray(len(values))
    groups: list[list[Any]] = [[] for _ in range(_W_CODES)]
    for i, v in enumerate(values):
        kind = type(v)
        if kind is float:
            if -200_000.0 < v < 200_000.0 and (v != 0.0 or math.copysign(1.0, v) > 0.0):
                m4 = round(v * 10_000.0)
                if m4 / 10_000.0 == v and -_I16 <= m4 <= _I16:
                    code, item = _W_A, m4
                else:
                    m2 = round(v * 100.0)
                    if m2 / 100.0 == v and -_I16 <= m2 <= _I16:
                        code, item = _W_B, m2
                    elif m4 / 10_000.0 == v:
                        code, item = _W_E, m4
                    elif m2 / 100.0 == v:
                        code, item = _W_F, m2
                    else:
                        code, item = _W_D, v
            elif v != v:
                return None
            elif -20_000_000.0 < v < 20_000_000.0 and v != 0.0 and round(v * 100.0) / 100.0 == v:
                code, item = _W_F, round(v * 100.0)
            else:  # -0.0, infinities, large or long floats
                code, item = _W_D, v
        elif kind is int:
            if -128 <= v <= 127:
                code = _W_I8
            elif -32_768 <= v <= _I16:
                code = _W_I16
            elif -_I32 - 1 <= v <= _I32:
                code = _W_I32
            elif _INT64[0] <= v <= _INT64[1]:
                code = _W_I64
            else:
                return None
            item = v
        elif v is None:
            codes[i] = _W_NONE
            continue
        elif kind is str:
            item = v.encode("utf-8", "surrogatepass")
            if len(item) > 65_535:
                return None
            code = _W_STR8 if len(item) <= 255 else _W_STR16
        elif kind is bool:
            codes[i] = _W_TRUE if v else _W_FALSE
            continue
        else:
            return None
        codes[i] = code
        groups[code].append(item)
    if len(codes) % 2:
        codes.append(0)
    parts = [bytes(map(add, codes[0::2], map((16).__mul__, codes[1::2])))]
    for code in (_W_STR8, _W_STR16):  # lengths
        if groups[code]:
            parts.append(struct.pack(f"<{len(groups[code])}{_W_FORMAT[code]}", *map(len, groups[code])))
    for code in range(_W_I8, _W_CODES):
        if groups[code]:
            parts.append(struct.pack(f"<{len(groups[code])}{_W_FORMAT[code]}", *groups[code]))
    return (*parts, *groups[_W_STR8], *groups[_W_STR16])


def _decode_wide(data: bytes, pos: int, n: int) -> list[Any]:
    """The feature values of an entry in the wide form, its codes starting at ``pos``."""
    packed = np.frombuffer(data, dtype=np.uint8, count=(n + 1) // 2, offset=pos)
    pos += len(packed)
    codes = np.empty(2 * len(packed), dtype=np.uint8)
    codes[0::2] = packed & 15
    codes[1::2] = packed >> 4
    codes = codes[:n]
    counts = np.bincount(codes, minlength=_W_CODES).tolist()
    flat: list[Any] = []  # the values grouped by code, in code order, each group in position order
    for code in (_W_NONE, _W_FALSE, _W_TRUE):
        flat += [_W_CONSTANT[code]] * counts[code]
    lengths: list[Any] = []
    for code in range(_W_STR8, _W_CODES):
        k = counts[code]
        if k:
            fmt = f"<{k}{_W_FORMAT[code]}"
            items = struct.unpack_from(fmt, data, pos)
            pos += struct.calcsize(fmt)
            if code <= _W_STR16:
                lengths += items
            else:
                divisor = _W_DIVISOR.get(code)
                flat += items if divisor is None else map(truediv, items, repeat(divisor))
    if lengths:
        texts = []
        for length in lengths:
            texts.append(data[pos:pos + length].decode("utf-8", "surrogatepass"))
            pos += length
        at = counts[_W_NONE] + counts[_W_FALSE] + counts[_W_TRUE]
        flat[at:at] = texts
    values = np.empty(n, dtype=object)
    values[np.argsort(codes, kind="stable")] = flat  # positions grouped by code, as ``flat`` is
    return values.tolist()


def _names(mapping: Any) -> tuple[Any, ...] | None:
    """The keys of a dict, None for anything else (keys are checked once, when a shape is new)."""
    return tuple(mapping) if type(mapping) is dict else None


class HalfCodec:
    """Packs pending halves into bytes and back to equal objects with the same value types.

    A prediction: head (ts_ms, interned (model, model_version), interned shape), then the
    shape's fixed part (the class as an interned index or an inline string, score,
    confidence, latency_ms, the scores' and features' values, each in its smallest exact
    code), then the UTF-8 bytes of its strings. ``encode_*`` returns None for what it
    cannot restore exactly (NaN, ints beyond int64, other types) or when a table is full:
    the caller then keeps the object itself.
    """

    def __init__(self, max_pairs: int = MAX_PAIRS, max_classes: int = MAX_CLASSES,
                 max_shapes: int = MAX_SHAPES, max_shape_fields: int = MAX_SHAPE_FIELDS,
                 shapes_per_feature_set: int = SHAPES_PER_FEATURE_SET) -> None:
        if not 0 <= max_shapes <= 65_536:
            msg = f"max_shapes must be between 0 and 65536 (a 2-byte index), got {max_shapes}"
            raise ValueError(msg)
        self.pairs: Interner[tuple[str | None, str | None]] = Interner(max_pairs)
        self.classes: Interner[str] = Interner(max_classes)
        self.max_shapes = max_shapes
        self.max_shape_fields = max_shape_fields
        self.shape_index: dict[tuple[str, tuple[str, ...] | None, tuple[str, ...], bool], int] = {}
        self.shapes: list[_Shape] = []
        self.shape_fields = 0
        # Feature sets of WIDE_FEATURES or more: shapes made per set, and the sets now in the wide form.
        self.shapes_per_feature_set = shapes_per_feature_set
        self.names_shapes: dict[tuple[tuple[str, ...] | None, tuple[str, ...]], int] = {}
        self.wide_names: set[tuple[tuple[str, ...] | None, tuple[str, ...]]] = set()

    # -- predictions --
    def encode_prediction(self, p: Prediction) -> bytes | None:
        """The packed prediction, or None when it must wait as an object."""
        ts, model, version = p.ts_ms, p.model, p.model_version
        if type(ts) is not int or not _INT64[0] <= ts <= _INT64[1] or type(model) is not str \
                or type(version) is not str:
            return None
        feature_names = _names(p.features)
        score_names = None if p.scores is None else _names(p.scores)
        if feature_names is None or (p.scores is not None and score_names is None):
            return None
        codes: list[str] = []
        items: list[Any] = []
        tail: list[bytes] = []
        cls = p.prediction
        index = self.classes.get(cls) if type(cls) is str and len(cls) <= MAX_CLASS_CHARS else None
        if index is not None:
            codes.append("C")
            items.append(index)
        elif not _encode_values((cls,), codes, items, tail):
            return None
        names = (score_names, feature_names)
        wide = names in self.wide_names
        values = (p.score, p.confidence, p.latency_ms, *(() if p.scores is None else p.scores.values()),
                  *(() if wide else p.features.values()))
        if not _encode_values(values, codes, items, tail):
            return None
        if wide:
            features = _encode_wide(list(p.features.values()))
            if features is None:
                return None
        elif len(feature_names) >= WIDE_FEATURES and self.names_shapes.get(names, 0) >= self.shapes_per_feature_set \
                and ("".join(codes), score_names, feature_names, False) not in self.shape_index:
            self.wide_names.add(names)  # from now on in the wide form: shapes would go on growing
            return self.encode_prediction(p)
        shape_i = self._shape("".join(codes), score_names, feature_names, wide)
        pair_i = self.pairs.get((model, version))
        if shape_i is None or pair_i is None:
            return None
        shape = self.shapes[shape_i]
        head = (_PREDICTION_HEAD.pack(ts, pair_i, shape_i), shape.fixed.pack(*items), *tail)
        return b"".join((*head, *features) if wide else head)

    def _shape(self, codes: str, score_names: tuple[str, ...] | None,
               feature_names: tuple[str, ...], wide: bool = False) -> int | None:
        key = (codes, score_names, feature_names, wide)
        i = self.shape_index.get(key)
        if i is not None:
            return i
        fields = len(feature_names) + len(score_names or ())
        if len(self.shapes) >= self.max_shapes or self.shape_fields + fields > self.max_shape_fields \
                or not all(type(name) is str for name in (*feature_names, *(score_names or ()))):
            return None
        self.shape_fields += fields
        i = self.shape_index[key] = len(self.shapes)
        self.shapes.append(_Shape.of(codes, score_names, feature_names, wide))
        if not wide and len(feature_names) >= WIDE_FEATURES:
            self.names_shapes[(score_names, feature_names)] = self.names_shapes.get((score_names, feature_names), 0) + 1
        return i

    def decode_prediction(self, request_id: str, data: bytes) -> Prediction:
        ts, pair_i, shape_i = _PREDICTION_HEAD.unpack_from(data)
        shape = self.shapes[shape_i]
        values = list(shape.fixed.unpack_from(data, _PREDICTION_HEAD.size))
        for i in shape.by_10_000:
            values[i] /= 10_000.0
        for i in shape.by_100:
            values[i] /= 100.0
        pos = _PREDICTION_HEAD.size + shape.fixed.size
        for i in shape.strings:
            end = pos + values[i]
            values[i] = data[pos:end].decode("utf-8", "surrogatepass")
            pos = end
        if shape.wide:
            values += _decode_wide(data, pos, len(shape.feature_names))
        for i in shape.nones:
            values[i] = None
        if shape.codes[0] == "C":
            values[0] = self.classes.values[values[0]]
        model, version = self.pairs.values[pair_i]
        n = 4
        scores = None
        if shape.score_names is not None:
            n += len(shape.score_names)
            scores = dict(zip(shape.score_names, values[4:n], strict=True))
        features = dict(zip(shape.feature_names, values[n:], strict=True))
        return Prediction(request_id, model, version, ts, values[0], values[1], values[2], scores,
                          features, values[3])

    # -- labels --
    def encode_label(self, g: GroundTruth) -> bytes | None:
        """The packed label (ts, interned model pair, interned class), or None."""
        ts, label = g.ts_ms, g.label
        if type(ts) is not int or not _INT64[0] <= ts <= _INT64[1] or type(label) is not str \
                or len(label) > MAX_CLASS_CHARS or not _optional_str(g.model) \
                or not _optional_str(g.model_version):
            return None
        class_i = self.classes.get(label)
        pair_i = self.pairs.get((g.model, g.model_version))
        if class_i is None or pair_i is None:
            return None
        return _LABEL_HEAD.pack(ts, pair_i, class_i)

    def decode_label(self, request_id: str, data: bytes) -> GroundTruth:
        ts, pair_i, class_i = _LABEL_HEAD.unpack_from(data)
        model, version = self.pairs.values[pair_i]
        return GroundTruth(request_id, self.classes.values[class_i], ts, model, version)


def _optional_str(value: object) -> bool:
    return value is None or type(value) is str


def _ts(entry: bytes | Prediction | GroundTruth) -> int:
    """Event time of a waiting half, packed or not, without decoding the rest."""
    return _TS.unpack_from(entry)[0] if type(entry) is bytes else entry.ts_ms  # type: ignore[union-attr]


# --- expiry ----------------------------------------------------------------------------

class _ExpiryIndex:
    """request_ids in buckets by ts_ms // bucket_ms, and a heap of the bucket keys.

    ``expire(limit)`` takes whole buckets that end at or before the limit and, in the one
    bucket holding the limit (sorted once by ts), only the entries below it: the work is the
    expired entries, the heap operations and that one bucket, not everything that waits.
    A half that leaves by a join stays in its bucket as a stale id (skipped on expiry);
    once stale ids are more than half of a bucket, the bucket is compacted.
    """

    def __init__(self, bucket_ms: int) -> None:
        if bucket_ms < 1:
            msg = f"bucket_ms must be at least 1, got {bucket_ms}"
            raise ValueError(msg)
        self.bucket_ms = bucket_ms
        self.buckets: dict[int, list[str]] = {}
        self.heap: list[int] = []  # each key of self.buckets once
        self.stale: dict[int, int] = {}  # bucket key -> ids that left it by a join
        self.ordered: set[int] = set()  # buckets sorted by ts, newest first

    def add(self, request_id: str, ts_ms: int) -> None:
        key = ts_ms // self.bucket_ms
        bucket = self.buckets.get(key)
        if bucket is None:
            self.buckets[key] = [request_id]
            heapq.heappush(self.heap, key)
        else:
            bucket.append(request_id)
            self.ordered.discard(key)

    def left(self, ts_ms: int, pending: dict[str, Any]) -> None:
        """A half with this ts left ``pending`` other than by expiry."""
        key = ts_ms // self.bucket_ms
        bucket = self.buckets.get(key)
        if bucket is None:
            return
        stale = self.stale.get(key, 0) + 1
        if stale * 2 <= len(bucket):
            self.stale[key] = stale
            return
        self.stale.pop(key, None)
        bucket[:] = dict.fromkeys(rid for rid in bucket if self._lives_in(rid, key, pending))

    def _lives_in(self, request_id: str, key: int, pending: dict[str, Any]) -> bool:
        entry = pending.get(request_id)
        return entry is not None and _ts(entry) // self.bucket_ms == key

    def expire(self, limit: int, pending: dict[str, Any]) -> list[tuple[str, Any]]:
        """Remove from ``pending`` and return every (request_id, entry) with ts < limit."""
        out: list[tuple[str, Any]] = []
        heap, buckets, width = self.heap, self.buckets, self.bucket_ms
        while heap and heap[0] * width < limit:
            key = heap[0]
            bucket = buckets[key]
            if (key + 1) * width <= limit:  # the whole bucket is older than the limit
                heapq.heappop(heap)
                del buckets[key]
                self.stale.pop(key, None)
                self.ordered.discard(key)
                for rid in bucket:
                    entry = pending.get(rid)
                    if entry is not None and _ts(entry) < limit:
                        del pending[rid]
                        out.append((rid, entry))
                continue
            if key not in self.ordered:
                live: dict[str, int] = {}
                for rid in bucket:
                    entry = pending.get(rid)
                    if entry is not None and (ts := _ts(entry)) // width == key:
                        live[rid] = ts
                bucket[:] = sorted(live, key=live.__getitem__, reverse=True)
                self.stale.pop(key, None)
                self.ordered.add(key)
            while bucket:
                rid = bucket[-1]
                entry = pending.get(rid)
                ts = None if entry is None else _ts(entry)
                if ts is not None and ts // width == key:
                    if ts >= limit:
                        break
                    del pending[rid]
                    out.append((rid, entry))
                bucket.pop()  # expired now, or left by a join since the sort
            break
        return out


# --- the join --------------------------------------------------------------------------

H = TypeVar("H", Prediction, GroundTruth)


class Halves(Sequence[H]):
    """Expired halves, unpacked only when read: the monitor just counts them, and a watermark
    that jumps a week ahead may expire a million at once."""

    __slots__ = ("_entries", "_unpack")

    def __init__(self, entries: list[tuple[str, Any]], unpack: Callable[[str, Any], H]) -> None:
        self._entries = entries
        self._unpack = unpack

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, i: int) -> H: ...
    @overload
    def __getitem__(self, i: slice) -> list[H]: ...
    def __getitem__(self, i: int | slice) -> H | list[H]:
        if isinstance(i, slice):
            return [self._unpack(*entry) for entry in self._entries[i]]
        return self._unpack(*self._entries[i])

    def __iter__(self) -> Iterator[H]:
        for entry in self._entries:
            yield self._unpack(*entry)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(list(self))


class JoinState:
    """Pending halves of requests, plus a bounded memory of joined request_ids.

    ``pending_predictions`` / ``pending_labels`` map request_id to the waiting half in its
    packed form (or the object itself when it cannot be packed): use ``len()``, ``in`` and
    iteration over request_ids; the halves come back as objects from the join and
    :meth:`expire`. Recovery puts halves back with :meth:`restore_prediction` /
    :meth:`restore_label`.
    """

    def __init__(self, ttl_ms: int, recent_capacity: int = 200_000, *, bucket_ms: int = 60_000,
                 codec: HalfCodec | None = None) -> None:
        self.ttl_ms = ttl_ms
        self.codec = codec or HalfCodec()
        self.pending_predictions: dict[str, bytes | Prediction] = {}
        self.pending_labels: dict[str, bytes | GroundTruth] = {}
        self._prediction_expiry = _ExpiryIndex(bucket_ms)
        self._label_expiry = _ExpiryIndex(bucket_ms)
        self.recently_joined: OrderedDict[str, None] = OrderedDict()
        self.recent_capacity = recent_capacity

    def pending_counts(self) -> tuple[int, int]:
        """(waiting predictions, waiting labels)."""
        return len(self.pending_predictions), len(self.pending_labels)

    def _remember_joined(self, request_id: str) -> None:
        self.recently_joined[request_id] = None
        if len(self.recently_joined) > self.recent_capacity:
            self.recently_joined.popitem(last=False)

    def _prediction(self, request_id: str, entry: bytes | Prediction) -> Prediction:
        return self.codec.decode_prediction(request_id, entry) if type(entry) is bytes else entry  # type: ignore[return-value,arg-type]

    def _label(self, request_id: str, entry: bytes | GroundTruth) -> GroundTruth:
        return self.codec.decode_label(request_id, entry) if type(entry) is bytes else entry  # type: ignore[return-value,arg-type]

    def add_prediction(self, prediction: Prediction) -> Outcome | _Duplicate | None:
        """Join with a waiting label, or wait; None means the prediction now waits."""
        rid = prediction.request_id
        if rid in self.pending_predictions or rid in self.recently_joined:
            return DUPLICATE
        entry = self.pending_labels.get(rid)
        if entry is not None:
            ts = _ts(entry)
            if abs(ts - prediction.ts_ms) <= self.ttl_ms:
                del self.pending_labels[rid]
                self._label_expiry.left(ts, self.pending_labels)
                self._remember_joined(rid)
                return Outcome(prediction, self._label(rid, entry))
        self.restore_prediction(prediction)
        return None

    def add_label(self, label: GroundTruth) -> Outcome | _Duplicate | None:
        """Join with a waiting prediction, or wait; None means the label now waits."""
        rid = label.request_id
        if rid in self.pending_labels or rid in self.recently_joined:
            return DUPLICATE
        entry = self.pending_predictions.get(rid)
        if entry is not None:
            ts = _ts(entry)
            if abs(label.ts_ms - ts) <= self.ttl_ms:
                del self.pending_predictions[rid]
                self._prediction_expiry.left(ts, self.pending_predictions)
                self._remember_joined(rid)
                return Outcome(self._prediction(rid, entry), label)
        self.restore_label(label)
        return None

    def restore_prediction(self, prediction: Prediction) -> None:
        """Let a prediction wait, without a join attempt (Recovery: the store says it waits)."""
        rid = prediction.request_id
        old = self.pending_predictions.get(rid)
        if old is not None:
            del self.pending_predictions[rid]
            self._prediction_expiry.left(_ts(old), self.pending_predictions)
        packed = self.codec.encode_prediction(prediction)
        self.pending_predictions[rid] = prediction if packed is None else packed
        self._prediction_expiry.add(rid, prediction.ts_ms)

    def restore_label(self, label: GroundTruth) -> None:
        """Let a label wait, without a join attempt (Recovery: the store says it waits)."""
        rid = label.request_id
        old = self.pending_labels.get(rid)
        if old is not None:
            del self.pending_labels[rid]
            self._label_expiry.left(_ts(old), self.pending_labels)
        packed = self.codec.encode_label(label)
        self.pending_labels[rid] = label if packed is None else packed
        self._label_expiry.add(rid, label.ts_ms)

    def expire(self, watermark_ms: int) -> tuple[Halves[Prediction], Halves[GroundTruth]]:
        """Drop halves whose partner can no longer match: ts + TTL < watermark."""
        limit = watermark_ms - self.ttl_ms
        return (Halves(self._prediction_expiry.expire(limit, self.pending_predictions), self._prediction),
                Halves(self._label_expiry.expire(limit, self.pending_labels), self._label))
