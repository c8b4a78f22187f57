"""Reading tabular input files and matching their columns by name, case-insensitively.

Shared by the price and news loaders so both accept the same file kinds and report problems the
same way: one line naming the file, the line and what was expected.
"""

from __future__ import annotations

import gzip
import json
import lzma
from pathlib import Path

import pandas as pd

from tradesim.errors import TradesimError

TABLE_SUFFIXES = (".csv", ".csv.gz", ".csv.xz", ".parquet", ".pq", ".jsonl", ".jsonl.gz", ".jsonl.xz", ".json")


def table_suffix(path: Path) -> str | None:
    """The recognised suffix of a data file name, or None."""
    name = path.name.lower()
    return next((s for s in TABLE_SUFFIXES if name.endswith(s)), None)


def stem(path: Path) -> str:
    """The file name without its data suffix: `MSFT.csv.gz` -> `MSFT`."""
    suffix = table_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.stem


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV, Parquet or JSON-lines file with every column as read (no type guessing of dates).

    Parquet keeps its column types: a datetime column stays one (news visibility is decided per value).
    """
    suffix = table_suffix(path)
    try:
        if suffix in (".csv", ".csv.gz", ".csv.xz"):
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=["", "null", "NULL", "NaN", "nan", "NA", "N/A"])
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".jsonl", ".jsonl.gz", ".jsonl.xz"):
            return _read_json_lines(path)
        if suffix == ".json":
            return pd.DataFrame.from_records(json.loads(path.read_text()))
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TradesimError(f"{path}: cannot be read as {suffix} ({first_line})") from None
    except json.JSONDecodeError as exc:
        raise TradesimError(f"{path}: cannot be read as {suffix} ({exc})") from None
    raise TradesimError(f"{path}: unsupported file type (expected one of {', '.join(TABLE_SUFFIXES)})")


def _read_json_lines(path: Path) -> pd.DataFrame:
    """One JSON object a line, every value as written (no guessing of dates or numbers)."""
    name = path.name.lower()
    opener = gzip.open if name.endswith(".gz") else lzma.open if name.endswith(".xz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")  # whole, then split (on newlines only, as a file iterates): a compressed file read line by line is slow
    records = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise TradesimError(f"{path}, line {number}: not a JSON object ({exc.msg})") from None
    return pd.DataFrame.from_records(records)


def match_columns(frame: pd.DataFrame, aliases: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Map canonical names to the frame's actual column names using case-insensitive aliases."""
    by_lower = {str(column).strip().lower(): column for column in frame.columns}
    found: dict[str, str] = {}
    for canonical, names in aliases.items():
        for name in names:
            if name in by_lower:
                found[canonical] = by_lower[name]
                break
    return found


def line_number(position: int) -> int:
    """The 1-based line of a data row in a file with one header line."""
    return position + 2
