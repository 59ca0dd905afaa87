"""Rows of CSV, Parquet and JSONL files, typed the way the contract says.

Replay input and reference files share one reader so that a value means the same
thing wherever it comes from. CSV has no types, so each cell is typed by one rule
(:func:`type_cell`); Parquet and JSONL keep their own types, except that a NaN
float becomes ``None`` (NaN is "no value", and it is not JSON).

The identifier columns (:data:`IDENTIFIER_COLUMNS`: ``request_id``, ``model``,
``model_version``) are text in every format: a CSV cell exactly as written
(``2026.10``, ``00123``, ``1e5`` stay so; empty is still ``None``), and a number
that a Parquet or JSONL file stores there becomes its text (:func:`identifier_text`).

Rows come out as ``(line_number, dict)`` so that a bad row can be reported where a
person finds it: the physical line for CSV (the header is line 1) and JSONL, the
1-based row number for Parquet.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "log.csv"
>>> _ = path.write_text("request_id,model_version,score,flag,note\\n"
...                      "r1,2026.10,0.25,TRUE,\\n00123,3,3,false,nan\\n")
>>> for line, row in read_rows(path):
...     print(line, row)
2 {'request_id': 'r1', 'model_version': '2026.10', 'score': 0.25, 'flag': True, 'note': None}
3 {'request_id': '00123', 'model_version': '3', 'score': 3, 'flag': False, 'note': 'nan'}
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

Row = dict[str, Any]
ErrorHandler = Callable[[int, str], None]

CSV_SUFFIXES = frozenset({".csv"})
PARQUET_SUFFIXES = frozenset({".parquet"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})
SUFFIXES = CSV_SUFFIXES | PARQUET_SUFFIXES | JSONL_SUFFIXES

# Columns that name things rather than measure them: never typed as numbers or bools.
IDENTIFIER_COLUMNS = ("request_id", "model", "model_version")

_NUMBER_START = frozenset("0123456789+-.")
_NUMBER_CHARS = "0123456789+-.eE"
_BOOLS = {"true": True, "false": False}

# Inference logs can have wide text cells (e.g. serialised inputs).
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class TabularError(ValueError):
    """A file or a row that cannot be read; the message names the file and the line."""


def type_cell(text: str) -> Any:
    """Type one CSV cell by the contract's rule.

    Empty -> None, a finite decimal number -> int (integer literal) or float,
    ``true``/``false`` in any case -> bool, anything else -> the string itself.
    Only plain ASCII literals count as numbers: ``nan``, ``inf``, ``1_000`` and
    ``" 1"`` stay strings, because the rule is about what a person wrote.

    >>> [type_cell(t) for t in ("", "42", "-7", "+3", "2.50", ".5", "1e3", "True", "FALSE")]
    [None, 42, -7, 3, 2.5, 0.5, 1000.0, True, False]
    >>> [type_cell(t) for t in ("nan", "-inf", "1e999", "1_000", " 1", "north", "1.2.3")]
    ['nan', '-inf', '1e999', '1_000', ' 1', 'north', '1.2.3']
    """
    if not text:
        return None
    if text[0] in _NUMBER_START:
        return _number_or_text(text)
    if len(text) in (4, 5):
        return _BOOLS.get(text.lower(), text)
    return text


def identifier_text(value: Any) -> Any:
    """The text of an identifier that a file stores as a number; any other value as it is.

    An integer gives its digits, a float its shortest repr (the text that reads back as
    the same float: ``2026.1``, not ``2026.10``, which only a string column keeps), a
    decimal its exact text. Strings, ``None``, bools and everything else are left for
    the event parser to accept or reject.

    >>> [identifier_text(v) for v in (3, 2026.1, 2026.10, 1e5, Decimal("2026.10"), "00123", None, True)]
    ['3', '2026.1', '2026.1', '100000.0', '2026.10', '00123', None, True]
    """
    kind = type(value)
    if kind is int or kind is Decimal:
        return str(value)
    if kind is float:
        return repr(value)
    return value


def _identifiers_as_text(row: Row) -> Row:
    """Turn numbers in a JSONL row's identifier columns into their text (in place)."""
    for name in IDENTIFIER_COLUMNS:
        value = row.get(name)
        if value is not None and type(value) is not str:
            row[name] = identifier_text(value)
    return row


def _number_or_text(text: str) -> Any:
    """The number a literal spells, or the text when it is no finite decimal number.

    Only the characters of decimal literals get as far as ``float()``, which would
    otherwise also take ``nan``, ``_`` separators, spaces and non-ASCII digits.
    """
    if text.strip(_NUMBER_CHARS):
        return text
    digits = text[1:] if text[0] in "+-" else text
    if digits.isdecimal():
        return int(text)
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


class _CellCache(dict[str, Any]):
    """:func:`type_cell` with a memory of short cells (classes, categories, small numbers):
    they repeat row after row, so most cells of an inference log are typed once (<= ~10 MB)."""

    __slots__ = ()
    MAX_TEXT = 6
    MAX_ENTRIES = 100_000

    def __missing__(self, text: str) -> Any:
        value = type_cell(text)
        if len(text) <= self.MAX_TEXT and len(self) < self.MAX_ENTRIES:
            self[text] = value
        return value


def format_cell(value: Any) -> str:
    """The CSV text of a value, chosen so that :func:`type_cell` reads the same value back.

    >>> [format_cell(v) for v in (None, True, 3, 2.5, 65000.0, "north")]
    ['', 'true', '3', '2.5', '65000.0', 'north']
    """
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def file_format(path: str | Path) -> str:
    """``csv``, ``parquet`` or ``jsonl``, from the file's extension; ValueError for any other.

    >>> file_format("log.NDJSON")
    'jsonl'
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    allowed = ", ".join(sorted(SUFFIXES))
    raise ValueError(f"{path}: unknown file type {suffix or '(none)'!r}: expected one of {allowed}")


@dataclass(frozen=True)
class Shard:
    """Which records a reader yields: every ``count``-th from ``index``, among the first ``limit``.

    A record is a data row (CSV), a non-blank line (JSONL) or a row (Parquet), readable
    or not. ``count`` processes, each with its own ``index``, share one file this way;
    records of other shards are passed over before they are typed, so they cost little.
    """

    index: int = 0
    count: int = 1
    limit: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index {self.index} is not in 0..{self.count - 1}")


EVERY_ROW = Shard()


def read_rows(path: str | Path, on_error: ErrorHandler | None = None, *,
              shard: Shard = EVERY_ROW) -> Iterator[tuple[int, Row]]:
    """Yield ``(line_number, row)`` for every row of a CSV, Parquet or JSONL file.

    A row that cannot be read at all (a CSV row with more cells than the header, a
    JSONL line that is not a JSON object) raises :class:`TabularError`, unless
    ``on_error(line_number, reason)`` is given: then it is called and the row skipped.

    >>> list(read_rows("rows.xlsx"))
    Traceback (most recent call last):
    ...
    ValueError: rows.xlsx: unknown file type '.xlsx': expected one of .csv, .json, .jsonl, .ndjson, .parquet
    """
    path = Path(path)
    kind = file_format(path)
    if kind == "csv":
        return _read_csv(path, on_error, shard)
    if kind == "parquet":
        return _read_parquet(path, shard)
    return _read_jsonl(path, on_error, shard)


def _report(path: Path, line: int, reason: str, on_error: ErrorHandler | None) -> None:
    if on_error is None:
        raise TabularError(f"{path}:{line}: {reason}")
    on_error(line, reason)


def _read_csv(path: Path, on_error: ErrorHandler | None, shard: Shard) -> Iterator[tuple[int, Row]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return
        width, typed = len(header), _CellCache().__getitem__
        # The raw text of identifier cells replaces their typed value (the last column of a name wins,
        # as it does in the row's dict).
        raw = [(name, column) for name, column in {n: i for i, n in enumerate(header)}.items()
               if name in IDENTIFIER_COLUMNS]
        index, count, limit = shard.index, shard.count, shard.limit
        record, line = -1, reader.line_num + 1
        for cells in reader:
            start, line = line, reader.line_num + 1  # a quoted cell may span lines
            if not cells:
                continue
            record += 1
            if limit is not None and record >= limit:
                return
            if record % count != index:
                continue
            if len(cells) != width:
                if len(cells) > width:
                    _report(path, start, f"{len(cells)} cells, the header has {width}", on_error)
                    continue
                cells += [""] * (width - len(cells))  # missing trailing cells are empty
            row = dict(zip(header, map(typed, cells), strict=True))
            for name, column in raw:
                row[name] = cells[column] or None
            yield start, row


def _read_jsonl(path: Path, on_error: ErrorHandler | None, shard: Shard) -> Iterator[tuple[int, Row]]:
    index, count, limit = shard.index, shard.count, shard.limit
    record = -1
    with path.open("rb") as handle:
        for line, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            record += 1
            if limit is not None and record >= limit:
                return
            if record % count != index:
                continue
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError as err:
                _report(path, line, f"not valid JSON: {str(err).splitlines()[0]}", on_error)
                continue
            if not isinstance(row, dict):
                _report(path, line, "not a JSON object", on_error)
                continue
            yield line, _identifiers_as_text(row)


def _read_parquet(path: Path, shard: Shard) -> Iterator[tuple[int, Row]]:
    import pyarrow.parquet as pq

    first = 0  # record number of the batch's first row
    for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
        end = len(batch) if shard.limit is None else min(len(batch), shard.limit - first)
        offsets = range((shard.index - first) % shard.count, max(end, 0), shard.count)
        if offsets:
            taken = batch.take(list(offsets)) if shard.count > 1 or end < len(batch) else batch
            names = taken.schema.names
            columns = [_column_values(name, column) for name, column in zip(names, taken.columns, strict=True)]
            for offset, values in zip(offsets, zip(*columns, strict=True), strict=True):
                yield first + offset + 1, dict(zip(batch.schema.names, values, strict=True))
        first += len(batch)
        if shard.limit is not None and first >= shard.limit:
            return


def _column_values(name: str, column: Any) -> list[Any]:
    """A Parquet column's values: NaN as None, identifier columns as text."""
    values = _nan_to_null(column).to_pylist()
    if name in IDENTIFIER_COLUMNS:
        return [identifier_text(value) for value in values]
    return values


def _nan_to_null(column: Any) -> Any:
    """NaN means "no value" in a data frame; the contract's value for that is null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_floating(column.type):
        return pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
    return column


def write_rows(path: str | Path, rows: Sequence[Row], columns: Sequence[str] | None = None) -> Path:
    """Write rows as CSV, Parquet or JSONL (by extension) so that :func:`read_rows` gives them back.

    ``columns`` fixes the column order (default: the keys of the first row). In CSV a
    string that spells a number or ``true``/``false`` comes back typed, as the contract's
    rule says, except in the identifier columns; Parquet and JSONL keep it a string.
    """
    path = Path(path)
    kind = file_format(path)
    names = list(columns) if columns is not None else list(rows[0]) if rows else []
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "csv":
        _write_csv(path, rows, names)
    elif kind == "parquet":
        _write_parquet(path, rows, names)
    else:
        _write_jsonl(path, rows, names)
    return path


def _write_csv(path: Path, rows: Iterable[Row], names: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([format_cell(row.get(name)) for name in names] for row in rows)


def _write_parquet(path: Path, rows: Sequence[Row], names: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({name: [row.get(name) for row in rows] for name in names})
    pq.write_table(table, path)


def _write_jsonl(path: Path, rows: Iterable[Row], names: list[str]) -> None:
    with path.open("wb") as handle:
        for row in rows:
            handle.write(orjson.dumps({name: row.get(name) for name in names}))
            handle.write(b"\n")
