"""The weak-supervision setting: majority vote, protocol defaults, errors, and a run end to end."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from benchmark.backbones import predict
from benchmark.cli import main
from benchmark.config import resolve
from benchmark.data import DataError, load_dataset
from benchmark.loop import Run, run_experiment
from benchmark.registry import UnknownNameError
from benchmark.settings import SETTINGS, majority_vote

VOTES = np.array([
    [0, 0, 1, -1],      # 0 wins 2:1
    [-1, -1, -1, -1],   # every rule abstains: not covered
    [2, -1, -1, -1],    # one vote
    [0, 1, -1, -1],     # tie 0/1: seeded coin
    [1, 1, 2, 2],       # tie 1/2
])


def test_majority_vote_by_hand_with_seeded_ties():
    covered, label = majority_vote(VOTES, 3, np.random.default_rng(0))
    assert covered.tolist() == [True, False, True, True, True]
    assert label[0] == 0 and label[1] == -1 and label[2] == 2
    assert label[3] in (0, 1) and label[4] in (1, 2)
    again = majority_vote(VOTES, 3, np.random.default_rng(0))[1]
    assert again.tolist() == label.tolist()
    ties = {tuple(majority_vote(VOTES, 3, np.random.default_rng(s))[1][3:]) for s in range(30)}
    assert ties == {(0, 1), (0, 2), (1, 1), (1, 2)}     # both ways, never a class outside the tie


def test_initial_labels_are_weak_votes_on_the_pool_with_accuracy_and_coverage():
    weak = SETTINGS.get("weak")
    assert weak.needs_weak_labels and not weak.counts_initial and weak.allow_pseudo
    data = SimpleNamespace(name="toy", num_classes=3,
                           train=SimpleNamespace(weak=np.concatenate([VOTES, VOTES[:1]])))
    pool_idx = np.array([0, 1, 2, 5])                  # the run's pool: train rows 0, 1, 2, 5
    pool_y = np.array([0, 2, 1, 1])
    init = weak.initial(pool_y, 100, np.random.default_rng(0), dataset=data, pool_idx=pool_idx)
    assert init.ids.tolist() == [0, 2, 3] and init.labels.tolist() == [0, 2, 0]
    assert init.clean.size == 0
    assert init.info == {"weak_coverage": 0.75, "weak_acc": pytest.approx(1 / 3), "n_weak": 3}


def test_datasets_without_weak_labels_give_a_clear_error(toy_data):
    with pytest.raises(DataError, match="weak setting cannot run"):
        load_dataset(str(toy_data), with_weak=True)
    data = SimpleNamespace(name="toy", num_classes=3, train=SimpleNamespace(weak=None))
    with pytest.raises(ValueError, match="trec and chemprot"):
        SETTINGS.get("weak").initial(np.zeros(3, int), 1, np.random.default_rng(0), dataset=data)


def test_protocol_defaults_budget_500_and_bounded_training_never_over_set():
    cpu = resolve("st", "trec", 0, "weak", "cpu")
    assert cpu["budget"] * cpu["rounds"] == 500 and cpu["weak_labels"] == "init"
    assert cpu["max_steps"] == cpu["epochs"] * int(np.ceil((100 + 10 * 100) / 8)) == 414
    mine = resolve("st", "trec", 0, "weak", "cpu", {"budget": 30, "max_steps": 99})
    assert (mine["budget"], mine["max_steps"]) == (30, 99)
    assert resolve("st", "trec", 0, "ssal", "cpu")["budget"] == 100     # other settings untouched
    assert resolve("st", "trec", 0, "ssal", "cpu")["max_steps"] is None
    assert resolve("st", "trec", 0, "weak", "cpu", {"weak_labels": "keep"})["weak_labels"] == "keep"
    assert "weak_labels" not in resolve("st", "trec", 0, "ssal", "cpu")   # the weak setting's key
    with pytest.raises(ValueError, match="weak_labels must be one of init, keep"):
        resolve("st", "trec", 0, "weak", "cpu", {"weak_labels": "drop"})
    with pytest.raises(UnknownNameError, match="weak_labels"):
        resolve("st", "trec", 0, "ssal", "cpu", {"weak_labels": "keep"})


def test_cli_refuses_an_unknown_reading_before_any_work(capsys):
    assert main(["run", "--method", "st", "--dataset", "trec", "--setting", "weak",
                 "--set", "weak_labels=maybe"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: weak_labels must be one of")


def add_weak_files(folder, seed=0):
    """Rules for the toy topics: one keyword rule per topic, right on its own rows, plus noise."""
    rng = np.random.default_rng(seed)
    names = json.loads((folder / "labels.json").read_text())
    for split in ("train", "dev", "test"):
        rows = [json.loads(x) for x in (folder / f"{split}.jsonl").read_text().splitlines()]
        for r in rows:
            gold = names.index(r["label"])
            r["weak_labels"] = [gold if rng.random() < 0.7 else -1, int(rng.integers(3)), -1]
        (folder / f"weak_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("reading", ["init", "keep"])
def test_round_0_trains_on_weak_labels_and_seeds_the_bank_then_each_reading(
        toy_data, tiny_overrides, tmp_path, reading):
    """``init``: after round 0 the labelled set is the clean queries only and every other pool
    text is unlabelled; ``keep``: the weak labels stay in the labelled set. In both, round 0
    trains on the weak labels and ACTUNE's memory bank starts from that model's predictions."""
    add_weak_files(toy_data)
    cfg = resolve("actune", str(toy_data), 0, "weak", "smoke",
                  {**tiny_overrides, "n_clusters": 4, "n_regions": 2, "st_growth": 30,
                   "weak_labels": reading})
    run = Run(cfg, tmp_path / reading, log=lambda *_: None)
    run.store.open()
    run.prepare()
    state = run.initial_state()
    weak = dict(state.labels)
    assert len(weak) > 100 and state.clean == []
    record, model = run.train_round(0, state)
    assert record["n_train_labels"] == len(weak) == record["n_weak"]
    probs, _ = predict(model, run.pool_tokens, run.pad_id, cfg["eval_batch_size"], cfg["amp"])
    run.select(1, model, state)
    bank = run.method.bank
    assert bank.round == 0 and torch.allclose(bank.values.float(), probs.float(), atol=1e-6)
    queried = state.selected.queried
    assert len(queried) == cfg["budget"] == 8 and state.clean == sorted(queried)
    assert all(state.labels[i] == run.pool_y[i] for i in queried)      # the oracle's labels
    pseudo = set(state.pseudo.ids.tolist())
    assert pseudo & set(weak) and not pseudo & set(queried)  # weakly-labelled texts pseudo-labelled
    record, _ = run.train_round(1, state)
    if reading == "init":
        assert sorted(state.labels) == state.clean
        assert record["n_train_labels"] == record["n_labels"] == 8
    else:
        assert set(state.labels) == set(weak) | set(queried)
        assert record["n_train_labels"] == len(set(weak) | set(queried))
        assert all(state.labels[i] == weak[i] for i in set(weak) - set(queried))


def test_weak_run_end_to_end_counts_clean_labels_only(toy_data, tiny_overrides, tmp_path):
    add_weak_files(toy_data)
    cfg = resolve("st", str(toy_data), 0, "weak", "smoke", {**tiny_overrides, "threshold": 0.0,
                                                            "weak_labels": "keep"})
    assert cfg["max_steps"] == max(4, 1 * int(np.ceil((12 + 2 * 8) / 8)))
    records = run_experiment(cfg, tmp_path / "out", log=lambda *_: None)
    first = records[0]
    assert first["n_labels"] == 0 and first["n_queried"] == 0
    assert 0.5 < first["weak_coverage"] <= 1 and 0 < first["weak_acc"] <= 1
    assert first["n_train_labels"] == first["n_weak"] > 100        # ~all 120 pool texts
    assert first["train"]["steps"] <= cfg["max_steps"]
    assert [r["n_labels"] for r in records] == [0, 8, 16]
    assert records[2]["n_pseudo"] > 0 and records[2]["pseudo_acc"] is not None


def test_trec_majority_vote_matches_the_data_readme(shared_data):
    data = load_dataset("trec", str(shared_data), with_weak=True)
    assert data.train.weak.shape == (len(data.train), 68)
    covered, label = majority_vote(data.train.weak, data.num_classes, np.random.default_rng(0))
    assert covered.mean() == pytest.approx(0.9519, abs=5e-4)       # data README: 0.9519
    assert (label[covered] == data.train.labels[covered]).mean() == pytest.approx(0.537, abs=0.01)


def test_weak_init_run_end_to_end_resumes_to_the_same_records(toy_data, tiny_overrides, tmp_path,
        stop_after_round):
    """``init`` through the loop: clean labels only after round 0, and the flag that drops the
    weak labels survives a kill between rounds (it lives in the checkpointed state)."""
    add_weak_files(toy_data)
    cfg = resolve("st", str(toy_data), 0, "weak", "smoke", {**tiny_overrides, "threshold": 0.0})
    whole = run_experiment(cfg, tmp_path / "whole", log=lambda *_: None)
    assert [r["n_train_labels"] for r in whole] == [whole[0]["n_weak"], 8, 16]
    assert whole[2]["n_pseudo"] > 0
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path / "cut", log=stop_after_round(0))
    resumed = run_experiment(cfg, tmp_path / "cut", log=lambda *_: None)
    drop = lambda rs: [{k: v for k, v in r.items() if k not in ("time", "train")} for r in rs]
    assert drop(resumed) == drop(whole)
