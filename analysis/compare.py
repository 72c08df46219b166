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


def key_columns(df: pd.DataFrame) -> list[str]:
    """The leading text columns (dataset, method, ...): what names a row. The first numeric
    column ends them, so a text column after it (a verdict) is compared, not joined on."""
    keys = []
    for c in df.columns:
        if pd.api.types.is_numeric_dtype(df[c]):
            break
        keys.append(c)
    return keys


def compare_tables(before: pd.DataFrame, after: pd.DataFrame, columns: list[str] | None = None,
                   labels: tuple[str, str] = ("before", "after")) -> pd.DataFrame:
    """Rows joined on ``before``'s key columns; each compared column as ``col (label)`` twice,
    and a numeric one's ``col change`` (after minus before). A row only one table has is kept,
    its other side blank: a method added or dropped is part of what changed."""
    keys = key_columns(before)
    if not keys or not set(keys) <= set(after.columns):
        raise ValueError(f"the tables share no key columns (before's: {keys or 'none'})")
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
                    labels: tuple[str, str] = ("before", "after")) -> pd.DataFrame:
    """:func:`compare_tables` on one table of two report folders."""
    return compare_tables(pd.read_csv(table_path(before, table)),
                          pd.read_csv(table_path(after, table)), columns, labels)
