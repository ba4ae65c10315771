"""Shared pieces of the docs generator: paths, block markers and the formatting of numbers and prose."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Callable

import pandas as pd

from gumbench.benchmarks.gradstats import Interval, format_interval, format_number

ROOT = Path(__file__).resolve().parents[2]
START = "<!-- generated: {} (python scripts/write_docs.py) -->"
END = "<!-- end: {} -->"
BLOCK = re.compile(
    r"^<!-- generated: (\S+) \(python scripts/write_docs\.py\) -->\n(.*?)^<!-- end: \1 -->$", re.M | re.S
)
MARKER = re.compile(r"^<!-- (?:generated|end): ", re.M)
MARKDOWN_START = re.compile(r"([-*+>#|]|\d+[.)]|```)( |$)|[-=]+$")  # list item, quote, heading, table, fence, underline


# --- formatting --------------------------------------------------------------------------------

def interval(source, key: str) -> str:
    """'value [low, high]' of a statistic: from a gradstats JSON row ({key: {value, low, high}}) or
    from a CSV row (key, key_low, key_high)."""
    if isinstance(source[key], dict):
        return format_interval(Interval(**source[key]))
    return format_interval(Interval(source[key], source[f"{key}_low"], source[f"{key}_high"]))


def between(values, fmt: Callable[[float], str] = format_number, unit: str = "") -> str:
    """'low-high' of the values as ``fmt`` prints them (one value when both ends print the same)."""
    low, high = fmt(min(values)), fmt(max(values))
    return f"{low}{unit}" if low == high else f"{low}-{high}{unit}"


def percent(x: float) -> str:
    return f"{100 * x:.0f}"


def decimals(n: int) -> Callable[[float], str]:
    return lambda x: f"{x:.{n}f}"


def cell(x) -> str:
    return "" if pd.isna(x) else format_number(float(x))


def table(header: list[str], rows: list[list]) -> str:
    line = lambda cells: "| " + " | ".join(str(c) for c in cells) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def prose(text: str, bullet: bool = False) -> str:
    """A paragraph (or a list item) wrapped at 100 columns, never inside a hyphenated name or around ' = '."""
    wrapped = textwrap.fill(text.replace(" = ", "\0=\0"), 100, initial_indent="- " if bullet else "",
                            subsequent_indent="  " if bullet else "", break_on_hyphens=False, break_long_words=False)
    lines = wrapped.replace("\0", " ").splitlines()
    claim(
        not any(MARKDOWN_START.match(line.lstrip()) for line in lines[1:]),
        f"no wrapped line of {text[:40]!r}... starts a Markdown block",
    )
    return "\n".join(lines)


def claim(holds: bool, finding: str) -> None:
    """Stop when a result no longer supports the words a template writes around its numbers."""
    if not holds:
        raise ValueError(f"the committed results no longer support: {finding}; rewrite that template")


def results(root: Path, name: str):
    path = root / "results" / name
    return json.loads(path.read_text()) if path.suffix == ".json" else pd.read_csv(path)
