"""Figures, tables and statistics of the paper from a results folder (``python -m analysis``).

``load`` reads run folders into DataFrames and reports problems; ``stats`` computes curves,
label efficiency and paired t-tests; ``figures`` and ``tables`` draw and format them;
``report`` writes everything the results support, plus an index.

    from analysis import load_results
    rounds = load_results("results/cpu-study").rounds   # one row per (run, round)
"""
from .load import load_results  # noqa: F401
