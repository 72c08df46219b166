"""Two reports' tables side by side: hand-made tables, the join and the CLI's errors."""
import math

import pandas as pd
import pytest

from analysis import __main__ as cli
from analysis.compare import compare_tables, key_columns

BEFORE = pd.DataFrame({"dataset": ["trec", "trec", "sst2"], "method": ["st", "ust", "st"],
                       "seeds": [3, 3, 3], "mean_diff_pts": [-0.93, -3.13, -0.36],
                       "verdict": ["loss", "loss", "unresolved"]})
AFTER = pd.DataFrame({"dataset": ["trec", "trec", "sst2"], "method": ["ust", "st", "cosine"],
                      "seeds": [2, 2, 1], "mean_diff_pts": [-0.17, 0.11, 0.01],
                      "verdict": ["unresolved", "unresolved", "unresolved"]})


def test_keys_are_the_leading_text_columns_only():
    assert key_columns(BEFORE) == ["dataset", "method"]  # verdict comes after a number


def test_rows_join_on_keys_whatever_their_order_and_unmatched_rows_stay():
    t = compare_tables(BEFORE, AFTER, ["mean_diff_pts", "verdict"], ("v1", "re-run")) \
        .set_index(["dataset", "method"])
    assert list(t.columns) == ["mean_diff_pts (v1)", "mean_diff_pts (re-run)",
                               "mean_diff_pts change", "verdict (v1)", "verdict (re-run)"]
    assert t.loc[("trec", "st"), "mean_diff_pts change"] == pytest.approx(0.11 + 0.93)
    assert t.loc[("trec", "ust"), "mean_diff_pts change"] == pytest.approx(-0.17 + 3.13)
    assert t.loc[("trec", "ust"), "verdict (v1)"] == "loss"
    assert math.isnan(t.loc[("sst2", "st"), "mean_diff_pts (re-run)"])  # dropped later
    assert math.isnan(t.loc[("sst2", "cosine"), "mean_diff_pts (v1)"])  # added later
    assert len(t) == 4


def test_formatted_cells_are_measurements_and_keys_must_name_one_row():
    # the final-accuracy table: text cells led by a number, '–' where a dataset has no run
    acc_v1 = pd.DataFrame({"setting": ["al", "weak"], "method": ["actune", "st"],
                           "sst2": ["82.00 ± 1.22 (3) ~", "–"],
                           "trec": ["**96.20 ± 0.53** (3)", "66.20 ± 3.65 (3) *"]})
    acc_new = acc_v1.assign(sst2=["83.66 ± 0.35 (2)", "–"])
    t = compare_tables(acc_v1, acc_new, labels=("v1", "re-run"))
    assert key_columns(acc_v1) == ["setting", "method"] and len(t) == 2
    assert t.loc[0, "sst2 (v1)"] == "82.00 ± 1.22 (3) ~"
    assert t.loc[0, "sst2 (re-run)"] == "83.66 ± 0.35 (2)"
    # round-by-round rows: the dataset names three rows, so a join would pair them all
    rounds = pd.DataFrame({"dataset": ["trec"] * 3, "round": [1, 2, 3], "diff": [0.1, 0.2, 0.3]})
    with pytest.raises(ValueError, match="several rows"):
        compare_tables(rounds, rounds)
    t = compare_tables(rounds, rounds.assign(diff=[0.2, 0.2, 0.2]), on=["dataset", "round"])
    assert t["diff change"].tolist() == pytest.approx([0.1, 0.0, -0.1])


def test_default_compares_every_shared_column_and_rejects_unknown_ones():
    t = compare_tables(BEFORE, AFTER)
    assert "seeds change" in t and "verdict (after)" in t and "verdict change" not in t
    with pytest.raises(ValueError, match="nope"):
        compare_tables(BEFORE, AFTER, ["nope"])


def _report(folder, df):
    (folder / "tables").mkdir(parents=True)
    df.to_csv(folder / "tables" / "table_pseudo_gain.csv", index=False)
    return str(folder)


def test_cli_prints_markdown_writes_files_and_refuses_bad_input(tmp_path, capsys):
    a, b = _report(tmp_path / "a", BEFORE), _report(tmp_path / "b", AFTER)
    assert cli.main(["compare", a, b, "--table", "pseudo_gain", "--columns", "mean_diff_pts",
                     "--labels", "v1,re-run", "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "| trec | st | -0.93 | 0.11 | 1.04 |" in out
    assert (tmp_path / "cmp" / "compare_pseudo_gain.csv").is_file()
    for argv, why in [([a, str(tmp_path), "--table", "pseudo_gain"], "no table"),
                      ([a, b, "--table", "pseudo_gain", "--labels", "v1"], "--labels"),
                      ([a, b, "--table", "pseudo_gain", "--columns", "x"], "not in both")]:
        assert cli.main(["compare", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and why in err and err.count("\n") == 1
