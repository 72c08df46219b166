"""One table of two reports side by side: what a protocol or code change moved, row by row.

A re-run after a protocol fix is only readable next to the study it replaces; joining the two
reports' CSVs (not their records) compares exactly what each report says, and it works for a
study whose records are gone or were made by older code."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def table_path(report: str | Path, table: str) -> Path:
    """``report/tables/table_<table>.csv``: the full-precision copy every report writes."""
    name = table if table.startswith("table_") else f"table_{table}"
    return Path(report) / "tables" / f"{name}.csv"


def _measured(col: pd.Series) -> bool:
    """Numbers, or text that starts with one (``82.00 ± 1.22 (3)``, ``**96.20**``, ``9.2 (2)``;
    ``–`` marks a missing cell): a measurement, never a row's name."""
    if pd.api.types.is_numeric_dtype(col):
        return True
    text = col.dropna().astype(str)
    text = text[~text.isin(["–", ""])]
    return len(text) > 0 and bool(text.str.match(r"^\**[-+]?\d").all())


def key_columns(df: pd.DataFrame) -> list[str]:
    """The leading text columns (dataset, method, ...): what names a row. The first measured
    column ends them, so a text column after it (a verdict) is compared, not joined on."""
    keys = []
    for c in df.columns:
        if _measured(df[c]):
            break
        keys.append(c)
    return keys


def compare_tables(before: pd.DataFrame, after: pd.DataFrame, columns: list[str] | None = None,
                   labels: tuple[str, str] = ("before", "after"),
                   on: list[str] | None = None) -> pd.DataFrame:
    """Rows joined on ``on`` (default: ``before``'s key columns); each compared column as
    ``col (label)`` twice, and a numeric one's ``col change`` (after minus before). A row only
    one table has is kept, its other side blank: a method added or dropped is part of what
    changed. Keys that name several rows of a table are refused (a join would pair them all)."""
    keys = on or key_columns(before)
    for name, t in (("before", before), ("after", after)):
        if not keys or not set(keys) <= set(t.columns):
            raise ValueError(f"the {name} table lacks the key column(s) {keys or '(none)'}")
        if t.duplicated(keys).any():
            raise ValueError(f"{', '.join(keys)} name several rows of the {name} table: "
                             "pass the columns that name one row (--on)")
    columns = columns or [c for c in before.columns if c in after.columns and c not in keys]
    missing = [c for c in columns if c not in before.columns or c not in after.columns]
    if missing:
        raise ValueError(f"column(s) {', '.join(missing)} not in both tables")
    a, b = labels
    merged = before[keys + columns].merge(after[keys + columns], on=keys, how="outer",
                                          suffixes=(f" ({a})", f" ({b})"), sort=False)
    out = merged[keys].copy()
    for c in columns:
        out[f"{c} ({a})"], out[f"{c} ({b})"] = merged[f"{c} ({a})"], merged[f"{c} ({b})"]
        if all(pd.api.types.is_numeric_dtype(t[c]) for t in (before, after)):
            out[f"{c} change"] = (merged[f"{c} ({b})"] - merged[f"{c} ({a})"]).round(6)
    return out


def compare_reports(before: str | Path, after: str | Path, table: str,
                    columns: list[str] | None = None,
                    labels: tuple[str, str] = ("before", "after"),
                    on: list[str] | None = None) -> pd.DataFrame:
    """:func:`compare_tables` on one table of two report folders."""
    return compare_tables(pd.read_csv(table_path(before, table)),
                          pd.read_csv(table_path(after, table)), columns, labels, on)
