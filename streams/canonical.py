"""The one canonical form in which classes and categorical values are compared.

JSON ``true``/``false`` become ``"1"``/``"0"``, integral numbers lose their
fraction, other numbers keep Python's shortest repr and strings stay as they are,
so a label sent as ``1``, ``1.0`` or ``true`` matches a prediction of ``"1"``.

>>> [canonical_class(v) for v in (True, False, 1, 1.0, 2.5, "1.0", "cat")]
['1', '0', '1', '1', '2.5', '1.0', 'cat']
"""

from __future__ import annotations

import math


def canonical_class(value: bool | int | float | str) -> str:
    """Canonical string of a class or categorical value (see module doc)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"class value {value!r} is not finite")
        if value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"a class must be a bool, number or string, not {type(value).__name__}")
