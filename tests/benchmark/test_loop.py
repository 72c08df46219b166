"""The round loop end to end on the tiny backbone: records, determinism, resume, bad input."""
import json

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.config import resolve
from benchmark.loop import RoundState, Run, run_experiment
from benchmark.registry import UnknownNameError
from methods.base import Method, Selection
from methods.registry import METHODS, register


def strip_times(records):
    return [{k: v for k, v in r.items() if k not in ("time", "train")} |
            {"train": {k: v for k, v in r["train"].items() if "seconds" not in k}} for r in records]


def test_loop_end_to_end(toy_data, tiny_overrides, tmp_path):
    cfg = resolve("entropy", str(toy_data), 0, "al", "smoke", tiny_overrides)
    records = run_experiment(cfg, tmp_path / "out", log=lambda *_: None)
    assert [r["round"] for r in records] == [0, 1, 2]
    assert [r["n_labels"] for r in records] == [12, 20, 28]
    queried = [set(r["queried_ids"]) for r in records]
    assert len(queried[0]) == 12 and len(queried[1]) == len(queried[2]) == 8
    assert not (queried[0] & queried[1]) and not (queried[1] & queried[2])
    for r in records:
        assert 0 <= r["test_acc"] <= 1 and 0 <= r["dev_f1"] <= 1
        assert r["n_pseudo"] == 0 and r["pseudo_acc"] is None
        assert {"train", "eval", "round"} <= set(r["time"])
    assert {"inference", "query"} <= set(records[1]["time"])
    run_dir = next((tmp_path / "out").iterdir())
    assert (run_dir / "done").exists() and not (run_dir / "checkpoint.pt").exists()
    on_disk = [json.loads(x) for x in (run_dir / "records.jsonl").read_text().splitlines()]
    assert on_disk == json.loads(json.dumps(records))


def test_same_seed_same_queries_and_accuracies(toy_data, tiny_overrides, tmp_path):
    cfg = resolve("entropy", str(toy_data), 3, "al", "smoke", tiny_overrides)
    a = run_experiment(cfg, tmp_path / "a", log=lambda *_: None)
    b = run_experiment(cfg, tmp_path / "b", log=lambda *_: None)
    assert strip_times(a) == strip_times(b)
    c = run_experiment(resolve("entropy", str(toy_data), 4, "al", "smoke", tiny_overrides),
                       tmp_path / "c", log=lambda *_: None)
    assert a[0]["queried_ids"] != c[0]["queried_ids"]  # another seed, another initial set


def test_killed_run_resumes_to_the_same_records(toy_data, tiny_overrides, tmp_path,
        stop_after_round):
    cfg = resolve("entropy", str(toy_data), 1, "al", "smoke", tiny_overrides)
    whole = run_experiment(cfg, tmp_path / "whole", log=lambda *_: None)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path / "cut", log=stop_after_round(1))
    run_dir = next((tmp_path / "cut").iterdir())
    assert not (run_dir / "done").exists() and (run_dir / "checkpoint.pt").exists()
    lines = []
    resumed = run_experiment(cfg, tmp_path / "cut", log=lines.append)
    assert any("resuming after round 1" in x for x in lines)
    assert strip_times(resumed) == strip_times(whole)
    assert [json.loads(x)["round"] for x in (run_dir / "records.jsonl").read_text().splitlines()] \
        == [0, 1, 2]


def test_a_checkpoint_keeps_the_dict_layout_and_one_without_round0_only_resumes(
        toy_data, tiny_overrides, tmp_path, stop_after_round):
    """The checkpoint keeps the keys of the dict the rounds once carried, so a run cut before
    :class:`RoundState` resumes; such a one lacks ``round0_only`` after round 0. Its pseudo-labels
    come back as they went in."""
    from benchmark.results import RunStore

    cfg = resolve("st", str(toy_data), 0, "ssal", "smoke", {**tiny_overrides, "threshold": 0.0})
    whole = run_experiment(cfg, tmp_path / "whole", log=lambda *_: None)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path / "cut", log=stop_after_round(1))
    store = RunStore(tmp_path / "cut", cfg)
    saved = store.load_checkpoint()
    assert set(saved) == {"round", "labels", "clean", "pseudo", "records", "round0_only",
                          "pending", "method", "pool_idx"}
    assert set(saved["pending"]) == {"queried", "time", "info"} and len(saved["pseudo"]["ids"])
    state = RoundState.from_checkpoint(saved)
    assert np.array_equal(state.pseudo.ids, saved["pseudo"]["ids"]) and state.round == 1
    del saved["round0_only"]
    store.save_checkpoint(saved)
    lines = []
    resumed = run_experiment(cfg, tmp_path / "cut", log=lines.append)
    assert any("resuming after round 1" in x for x in lines)
    assert strip_times(resumed) == strip_times(whole)
    assert whole[2]["n_pseudo"] > 0


def test_done_run_is_not_rerun(toy_data, tiny_overrides, tmp_path):
    cfg = resolve("random", str(toy_data), 0, "al", "smoke", tiny_overrides)
    first = run_experiment(cfg, tmp_path / "out", log=lambda *_: None)
    lines = []
    assert run_experiment(cfg, tmp_path / "out", log=lines.append) == first
    assert "already done" in lines[0]


def test_budget_larger_than_pool(toy_data, tiny_overrides, tmp_path):
    cfg = resolve("random", str(toy_data), 0, "al", "smoke", {**tiny_overrides, "budget": 60})
    with pytest.raises(ValueError, match="budget too large.*pool has only 120"):
        run_experiment(cfg, tmp_path / "out", log=lambda *_: None)
    assert not (tmp_path / "out").exists()  # refused before any run folder was made


def test_unknown_names_give_the_known_ones():
    with pytest.raises(UnknownNameError, match="Did you mean 'entropy'"):
        resolve("entropi", "trec")
    with pytest.raises(UnknownNameError, match="Known presets"):
        resolve("entropy", "trec", preset="gpu")
    with pytest.raises(UnknownNameError, match="unknown setting 'lrr'.*Did you mean 'lr'"):
        resolve("entropy", "trec", overrides={"lrr": 1})


class _Greedy(Method):
    """A broken method: queries the same id twice."""
    def select(self, view):
        return Selection(query=[view.unlabelled_ids[0]] * view.budget)


def test_a_method_breaking_the_contract_is_stopped(toy_data, tiny_overrides, tmp_path):
    register("greedy-test")(_Greedy)
    try:
        cfg = resolve("greedy-test", str(toy_data), 0, "al", "smoke", tiny_overrides)
        with pytest.raises(RuntimeError, match="same id twice"):
            run_experiment(cfg, tmp_path / "out", log=lambda *_: None)
    finally:
        METHODS._items.pop("greedy-test")


def test_pseudo_labels_count_only_in_ssal(toy_data, tiny_overrides, tmp_path):
    class _Pseudo(Method):
        def select(self, view):
            q = view.rng.choice(view.unlabelled_ids, view.budget, replace=False)
            rest = np.setdiff1d(view.unlabelled_ids, q)[:10]
            return Selection(q, rest, view.probs[rest].argmax(-1).numpy())
    register("pseudo-test")(_Pseudo)
    try:
        for setting, expect in (("al", 0), ("ssal", 10)):
            cfg = resolve("pseudo-test", str(toy_data), 0, setting, "smoke", tiny_overrides)
            recs = run_experiment(cfg, tmp_path / setting, log=lambda *_: None)
            assert [r["n_pseudo"] for r in recs] == [0, expect, expect]
            if expect:
                assert 0 <= recs[1]["pseudo_acc"] <= 1
    finally:
        METHODS._items.pop("pseudo-test")


def test_cli_run_and_list(toy_data, tiny_backbone, tmp_path, capsys):
    args = ["run", "--method", "random", "--dataset", str(toy_data), "--preset", "smoke",
            "--out", str(tmp_path / "out"), "--set", f"backbone={tiny_backbone}", "--set", "pool_size=100",
            "--set", "rounds=1", "--set", "budget=10", "--set", "initial_size=10",
            "--set", "epochs=1", "--set", "min_steps=2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "round  0" in out and "round  1" in out and "final: 20 labels" in out
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "entropy" in listed and "trec" in listed and "paper" in listed
    assert main(["run", "--method", "nope", "--dataset", "trec"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_compact_vocabulary_changes_nothing_but_speed(toy_data, tiny_overrides, tmp_path):
    """Dropping the embedding rows of tokens a run never sees is exact: same queries, same scores."""
    cfg = resolve("entropy", str(toy_data), 2, "al", "smoke", tiny_overrides)
    full = run_experiment({**cfg, "compact_vocab": False}, tmp_path / "full", log=lambda *_: None)
    compact = run_experiment(cfg, tmp_path / "compact", log=lambda *_: None)
    assert strip_times(full) == strip_times(compact)


def test_set_values_are_parsed_as_numbers_booleans_and_none():
    from benchmark.config import parse_overrides

    assert parse_overrides(["lr=2e-4", "rounds=3", "pool_size=null", "save_features=true",
                            "backbone=roberta-base", "beta=0.5"]) == {
        "lr": 2e-4, "rounds": 3, "pool_size": None, "save_features": True,
        "backbone": "roberta-base", "beta": 0.5}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["lr"])
