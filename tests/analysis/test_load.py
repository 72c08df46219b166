"""Loading: corrupt lines and unfinished runs are reported, not fatal; mixed configs flagged."""
import json

from analysis.load import complete_only, load_results, main_view
from analysis.stats import final_rows

from conftest import PROTOCOL, write_run


def test_corrupt_line_reported_and_skipped(tmp_path):
    run = write_run(tmp_path, "entropy", "trec", "al", 0, [0.5, 0.6, 0.7, 0.8])
    lines = (run / "records.jsonl").read_text().splitlines(keepends=True)
    lines[1] = '{"method": "entropy", "round": 1, "test_acc\n'   # a corrupt line
    (run / "records.jsonl").write_text("".join(lines) + '{"cut": ')  # and a cut tail
    res = load_results(tmp_path)
    assert sorted(res.rounds["round"]) == [0, 2, 3]
    assert any(":2: corrupt line skipped" in p for p in res.problems)
    assert any("cut short" in p for p in res.problems)


def test_record_missing_fields_is_skipped(tmp_path):
    run = write_run(tmp_path, "entropy", "trec", "al", 0, [0.5, 0.6])
    with open(run / "records.jsonl", "a") as f:
        f.write(json.dumps({"method": "entropy", "round": 2}) + "\n")
    res = load_results(tmp_path)
    assert len(res.rounds) == 2
    assert any("lacks" in p for p in res.problems)


def test_incomplete_run_plotted_but_not_in_final_table(tmp_path):
    write_run(tmp_path, "entropy", "trec", "al", 0, [0.5, 0.6, 0.7, 0.8])
    write_run(tmp_path, "entropy", "trec", "al", 1, [0.5, 0.6], done=False)
    res = load_results(tmp_path)
    assert len(res.rounds) == 6
    # a checkpoint nobody holds the lock of is a run cut short, not a running one
    assert any("incomplete (rounds reached 1/3)" in p for p in res.problems)
    final = final_rows(res.rounds, res.runs)
    assert list(final["seed"]) == [0] and list(final["round"]) == [3]


def test_complete_only_drops_unfinished_runs_and_their_rounds(tmp_path):
    write_run(tmp_path, "entropy", "trec", "al", 0, [0.5, 0.6, 0.7, 0.8])
    write_run(tmp_path, "entropy", "trec", "al", 1, [0.5, 0.9], done=False)
    res = complete_only(load_results(tmp_path))
    assert list(res.runs["seed"]) == [0] and sorted(res.rounds["round"]) == [0, 1, 2, 3]
    assert not any("running" in p for p in res.problems)
    assert "1 unfinished run folders left out (--complete-only)" in res.problems


def test_complete_only_keeps_seeds_every_method_has_finished(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path, "entropy", "trec", "al", seed, [0.5, 0.6, 0.7, 0.75])
    write_run(tmp_path, "random", "trec", "al", 0, [0.5, 0.6, 0.65, 0.7])
    write_run(tmp_path, "random", "trec", "al", 1, [0.5], done=False)
    write_run(tmp_path, "random", "sst2", "al", 1, [0.5, 0.6, 0.7, 0.75])   # another group
    res = complete_only(load_results(tmp_path))
    kept = sorted(zip(res.runs["method"], res.runs["dataset"], res.runs["seed"]))
    assert kept == [("entropy", "trec", 0), ("random", "sst2", 1), ("random", "trec", 0)]
    assert set(res.rounds["run"]) == set(res.runs["run"])
    assert ("1 complete runs left out until every method has finished their seed "
            "(--complete-only)") in res.problems


def test_mixed_protocols_reported_and_dominant_kept(tmp_path):
    for seed in range(2):
        write_run(tmp_path, "entropy", "trec", "al", seed, [0.5, 0.6, 0.7, 0.8])
    write_run(tmp_path, "random", "trec", "al", 0, [0.5, 0.6, 0.7, 0.8],
              protocol=dict(PROTOCOL, backbone="other"))
    res = load_results(tmp_path)
    assert any("2 different protocols" in p for p in res.problems)
    assert set(main_view(res.rounds)["method"]) == {"entropy"}


def test_two_readings_of_a_setting_are_two_comparisons_not_mixed_protocols(tmp_path):
    for reading, final in (("init", 0.9), ("keep", 0.7)):
        for seed in range(2):
            write_run(tmp_path, "entropy", "trec", "weak", seed, [0.5, final],
                      protocol=dict(PROTOCOL, weak_labels=reading))
    write_run(tmp_path, "entropy", "trec", "ssal", 0, [0.5, 0.6])     # no options: plain name
    res = load_results(tmp_path)
    assert not any("protocols" in p for p in res.problems)
    view = main_view(res.rounds)
    assert set(view["setting"]) == {"weak/init", "weak/keep", "ssal"}
    last = view[view["round"] == 1].groupby("setting")["test_acc"].mean()
    assert (last["weak/init"], last["weak/keep"]) == (0.9, 0.7)
    assert set(res.runs["setting"]) == {"weak/init", "weak/keep", "ssal"}


def test_main_view_keeps_reference_params_and_one_run_per_seed(tmp_path):
    for seed in range(2):
        write_run(tmp_path, "m", "trec", "ssal", seed, [0.5, 0.9], params={"beta": 0.5, "K": 25})
        write_run(tmp_path, "m", "trec", "ssal", seed, [0.5, 0.1], params={"beta": 0.1, "K": 25})
        write_run(tmp_path, "m", "trec", "ssal", seed, [0.5, 0.2], params={"beta": 0.5, "K": 9})
    # the same computation again in another folder (e.g. re-run with save_features): unfinished
    write_run(tmp_path, "m", "trec", "ssal", 0, [0.5], params={"beta": 0.5, "K": 25},
              protocol=dict(PROTOCOL, save_features=True), done=False)
    main = main_view(load_results(tmp_path).rounds)
    assert set(main["params_key"]) == {json.dumps({"K": 25, "beta": 0.5})}
    assert main.groupby("seed")["run"].nunique().tolist() == [1, 1]
    assert main.loc[main["round"] == 1, "test_acc"].tolist() == [0.9, 0.9]
