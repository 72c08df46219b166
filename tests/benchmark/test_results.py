"""Run folders: crash-safe record appends, corrupt lines reported, configs never mixed."""
import json

import pytest

from benchmark.config import resolve
from benchmark.results import ConfigMismatch, RunStore, read_records


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path, resolve("random", "trec", 0, "al", "smoke")).open()


def test_a_record_cut_by_a_crash_is_never_read_back(store):
    store.append({"round": 0, "test_acc": 0.5})
    store.append({"round": 1, "test_acc": 0.6})
    with open(store.records_path, "ab") as f:  # a crash in the middle of the third write
        f.write(b'{"round": 2, "test_ac')
    records, problems = read_records(store.path)
    assert [r["round"] for r in records] == [0, 1]
    assert len(problems) == 1 and "cut short" in problems[0]
    store.append({"round": 2, "test_acc": 0.7})  # the next append cuts the partial tail first
    records, problems = read_records(store.path)
    assert [r["round"] for r in records] == [0, 1, 2] and not problems


def test_corrupt_line_is_reported_and_skipped(store):
    store.append({"round": 0})
    with open(store.records_path, "a") as f:
        f.write("not json at all\n")
    store.append({"round": 1})
    records, problems = read_records(store.records_path)
    assert [r["round"] for r in records] == [0, 1]
    assert len(problems) == 1 and ":2: corrupt line" in problems[0]


def test_rewrite_round_trips(store):
    recs = [{"round": i, "x": [1, 2]} for i in range(3)]
    store.rewrite(recs)
    assert store.records() == recs


def test_run_folder_is_keyed_by_config_hash(tmp_path):
    a = resolve("random", "trec", 0, "al", "smoke")
    b = resolve("random", "trec", 0, "al", "smoke", {"lr": 3e-5})
    sa, sb = RunStore(tmp_path, a), RunStore(tmp_path, b)
    assert sa.path != sb.path and sa.hash != sb.hash
    assert RunStore(tmp_path, dict(a)).path == sa.path
    assert RunStore(tmp_path, {**a, "threads": 1}).path == sa.path  # speed knobs: same identity
    sa.open().record_start()
    cfg = json.loads((sa.path / "config.json").read_text())
    assert cfg["config_hash"] == sa.hash and cfg["config"]["lr"] == a["lr"]
    meta = json.loads((sa.path / "meta.json").read_text())
    assert "torch" in meta["versions"] and "git_commit" in meta


def test_a_folder_holding_another_config_is_refused(tmp_path):
    s = RunStore(tmp_path, resolve("random", "trec", 0, "al", "smoke")).open()
    (s.path / "config.json").write_text(json.dumps({"config_hash": "something-else"}))
    with pytest.raises(ConfigMismatch):
        s.open()


def test_checkpoint_state_is_plain_data_and_round_trips(store):
    """numpy arrays travel as tagged tensors, so ``weights_only=True`` reads the checkpoint."""
    import numpy as np
    import torch

    bank = torch.rand(5, 3, dtype=torch.float64)
    state = {"round": 1, "labels": {3: 1, 7: 0}, "pool_idx": np.arange(5, dtype=np.int64),
             "pseudo": {"ids": np.array([1, 2]), "labels": np.random.rand(2, 3).astype(np.float32),
                        "weights": None},
             "method": {"bank": {"values": bank, "before": (bank, torch.ones(5, dtype=torch.bool),
                                                            None)}},
             "records": [{"test_acc": np.float64(0.5), "queried_ids": [3, 7]}]}
    store.open()
    store.save_checkpoint(state)
    raw = torch.load(store.path / "checkpoint.pt", weights_only=True)
    assert isinstance(raw["pool_idx"]["__ndarray__"], torch.Tensor)
    back = store.load_checkpoint()
    assert back["labels"] == {3: 1, 7: 0} and back["records"] == [{"test_acc": 0.5,
                                                                    "queried_ids": [3, 7]}]
    for key in ("ids", "labels"):
        assert back["pseudo"][key].dtype == state["pseudo"][key].dtype
        assert np.array_equal(back["pseudo"][key], state["pseudo"][key])
    assert back["pool_idx"].dtype == np.int64 and back["pseudo"]["weights"] is None
    values, seen, round_ = back["method"]["bank"]["before"]
    assert torch.equal(values, bank) and seen.dtype == torch.bool and round_ is None


def test_folder_state_reads_the_markers_in_order(tmp_path):
    """One reading of a run folder for the grid's status and the analysis: the lock first,
    then ``done`` (whole or damaged), ``failed``, a checkpoint or records, nothing."""
    import os
    import socket

    from benchmark.results import folder_state

    cfg = resolve("random", "trec", 0, "al", "smoke")   # rounds 0..2
    store = RunStore(tmp_path, cfg)
    assert folder_state(store.path, cfg["rounds"]).state == "not started"
    with store.lock():
        store.open()
        state = folder_state(store.path, cfg["rounds"])
        assert state.state == "running" and state.detail == \
            f"pid {os.getpid()} on {socket.gethostname()}"
        store.append({"round": 0})
    assert folder_state(store.path, cfg["rounds"]).state == "incomplete"   # nobody holds it
    store.mark_failed("Traceback ...")
    assert folder_state(store.path, cfg["rounds"]).state == "failed"
    store.append({"round": 0})
    store.mark_done()                                   # done clears ``failed``
    state = folder_state(store.path, cfg["rounds"])
    assert (state.state, state.detail) == (
        "damaged", "round(s) 1, 2 missing; round(s) 0 recorded more than once")
    store.rewrite([{"round": t} for t in range(3)])
    assert folder_state(store.path, cfg["rounds"]).state == "done"
    assert folder_state(store.path).state == "done"     # rounds unknown: only repeats count
