"""Plain-text tables for the command line: right-aligned numbers, left-aligned text."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Number


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Rows under a header line, columns as wide as their widest cell.

    Floats print with 3 significant decimals unless already strings; numbers align right.
    """
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for j, text in enumerate(row):
            widths[j] = max(widths[j], len(text))
    numeric = [
        bool(rows) and all(isinstance(row[j], Number) for row in rows) for j in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        out = [
            v.rjust(widths[j]) if numeric[j] else v.ljust(widths[j]) for j, v in enumerate(values)
        ]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), rule, *(line(r) for r in cells)])


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def human_bytes(n: float) -> str:
    """``1536 -> '1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
