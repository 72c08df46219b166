"""Grid spec, expansion, status from disk and the local/debug executors (no cluster needed)."""
from __future__ import annotations

import json
import pickle
import socket
import time
from pathlib import Path

import pytest

from benchmark import grid as G
from benchmark.config import resolve
from benchmark.loop import run_experiment
from benchmark.results import RunStore

ROOT = Path(__file__).resolve().parents[2]


def write_grid(path: Path, **spec) -> Path:
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def test_smoke_grid_file_expands_to_methods_x_seeds(tmp_path):
    grid = G.Grid.load(ROOT / "grids" / "smoke.yaml")
    cells = grid.cells(tmp_path)
    assert len(grid.methods) >= 2 and len(grid.seeds) >= 2
    assert len(cells) == len(grid.methods) * len(grid.seeds) * len(grid.datasets)
    assert {(c.cfg["method"], c.cfg["seed"]) for c in cells} == \
        {(m, s) for m in grid.methods for s in grid.seeds}


def test_cell_identity_is_the_resolved_config_hash(tmp_path, toy_data):
    spec = write_grid(tmp_path / "g.yaml", methods=["random", "entropy"], datasets=[str(toy_data)],
                      seeds=[0, 1], preset="smoke", overrides={"rounds": 1},
                      sweep={"lr": [1e-4, 2e-4], "dropout": [0.1]})
    grid = G.Grid.load(spec)
    assert grid.name == "g"
    cells = grid.cells(tmp_path / "out")
    assert len(cells) == 2 * 2 * 2
    assert len({c.path for c in cells}) == 8
    # stable across expansions, and the same folder `benchmark run` would use
    assert [c.path for c in grid.cells(tmp_path / "out")] == [c.path for c in cells]
    one = next(c for c in cells if c.cfg["method"] == "entropy" and c.cfg["seed"] == 1
               and c.cfg["lr"] == 2e-4)
    cfg = resolve("entropy", str(toy_data), 1, "al", "smoke", {"rounds": 1, "lr": 2e-4})
    assert one.path == RunStore(tmp_path / "out", cfg).path
    # where/how fast a run happens is not part of its identity
    threaded = grid.with_overrides({"threads": 1}).cells(tmp_path / "out")
    assert [c.path for c in threaded] == [c.path for c in cells]


def test_blocks_give_each_setting_its_methods_in_seed_major_order(tmp_path, toy_data):
    spec = write_grid(tmp_path / "g.yaml", preset="smoke", seeds=[0, 1], datasets=[str(toy_data)],
                      blocks=[{"methods": ["random", "entropy"], "settings": ["al"]},
                              {"methods": ["actune"], "settings": ["ssal"],
                               "overrides": {"beta": 1.0}}])
    cells = G.Grid.load(spec).cells(tmp_path / "out")
    assert [(c.cfg["seed"], c.cfg["method"], c.cfg["setting"]) for c in cells] == [
        (0, "random", "al"), (0, "entropy", "al"), (0, "actune", "ssal"),
        (1, "random", "al"), (1, "entropy", "al"), (1, "actune", "ssal")]
    assert {c.cfg["params"].get("beta") for c in cells if c.cfg["method"] == "actune"} == {1.0}
    with pytest.raises(ValueError, match="unknown block key"):
        G.Grid.load(write_grid(tmp_path / "bad.yaml", preset="smoke",
                               blocks=[{"methods": ["random"], "datasets": ["trec"], "seed": 1}]))


def test_include_adds_a_cell_and_duplicates_collapse(tmp_path, toy_data):
    spec = write_grid(tmp_path / "g.yaml", methods=["random"], datasets=[str(toy_data)],
                      seeds=[0], preset="smoke",
                      include=[{"method": "random", "dataset": str(toy_data), "seed": 0},
                               {"method": "entropy", "dataset": str(toy_data), "seed": 3,
                                "overrides": {"dropout": 0.2}}])
    cells = G.Grid.load(spec).cells(tmp_path)
    assert [(c.cfg["method"], c.cfg["seed"], c.cfg["dropout"]) for c in cells] == \
        [("random", 0, 0.1), ("entropy", 3, 0.2)]


@pytest.mark.parametrize("spec, message", [
    ({"methods": ["random"], "datasets": ["trec"], "seed": [0]}, "unknown grid key"),
    ({"methods": ["random"]}, "no datasets"),
    ({"methods": ["random"], "datasets": ["trec"], "slurm": {"gpus": 1}}, "unknown slurm key"),
])
def test_bad_grid_files_fail_with_the_reason(tmp_path, spec, message):
    with pytest.raises(ValueError, match=message):
        G.Grid.load(write_grid(tmp_path / "g.yaml", **spec))


def test_unknown_method_or_override_fails_at_expansion(tmp_path):
    from benchmark.registry import UnknownNameError

    with pytest.raises(UnknownNameError):
        G.Grid("g", ["no-such-method"], ["trec"]).cells(tmp_path)
    with pytest.raises(UnknownNameError, match="betta"):
        G.Grid("g", ["random"], ["trec"], overrides={"betta": 1}).cells(tmp_path)


def test_slurm_parameters_grid_then_flags():
    grid = G.Grid("paper", ["random"], ["trec"],
                  slurm={"partition": "gpu", "time": 120, "mem_gb": 32, "gres": "gpu:1",
                         "cpus_per_task": 4, "additional": {"exclude": "node7"}})
    params = G.slurm_parameters(grid, {"time": 30, "qos": "high", "account": None,
                                       "array_parallelism": 16})
    assert params == {"slurm_partition": "gpu", "timeout_min": 30, "mem_gb": 32,
                      "slurm_gres": "gpu:1", "cpus_per_task": 4, "slurm_qos": "high",
                      "slurm_array_parallelism": 16, "name": "actune-paper",
                      "slurm_additional_parameters": {"exclude": "node7"}}


@pytest.mark.parametrize("name", ["paper_gpu.yaml", "paper_fig4_beta.yaml"])
def test_example_gpu_grids_expand_and_submitit_accepts_their_parameters(name, tmp_path,
                                                                        monkeypatch):
    from submitit.slurm.slurm import SlurmExecutor, _make_sbatch_string

    grid = G.Grid.load(ROOT / "slurm" / name)
    cells = grid.cells(tmp_path)
    assert len(cells) > 0 and all(c.cfg["preset"] == "paper" for c in cells)
    if "beta" in grid.sweep:
        assert sorted({c.cfg["params"]["beta"] for c in cells}) == [0, 0.1, 0.5, 1, 5]
    # no srun needed: validate the parameters as submitit would on a cluster
    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))
    ex = G.slurm_executor(grid, tmp_path / "submitit", {"partition": "gpu",
                                                         "additional": {"exclude": "node7"}})
    text = _make_sbatch_string(command="x", folder=tmp_path, **ex._executor.parameters)
    for flag in ("--gres=gpu:1", "--time=480", "--mem=32GB", "--partition=gpu",
                 "--exclude=node7", "--cpus-per-task=4"):
        assert flag in text
    assert ex._executor.max_num_timeout == grid.slurm.get("max_num_timeout", 3)


# --------------------------------------------------------------------------------------------
# status from disk, on hand-made run folders
@pytest.fixture
def cell(tmp_path, toy_data):
    return G.Grid("g", ["random"], [str(toy_data)], preset="smoke").cells(tmp_path / "out")[0]


def job_file(cell, **fields):
    cell.path.mkdir(parents=True, exist_ok=True)
    record = {"executor": "slurm", "job_id": "5_0", "folder": None, "submitted": time.time(),
              "host": socket.gethostname(), "pid": -1, **fields}
    (cell.path / G.JOB_FILE).write_text(json.dumps(record))


def test_status_not_launched_done_failed(cell):
    assert G.cell_status(cell).state == G.NOT_LAUNCHED
    cell.path.mkdir(parents=True)
    (cell.path / "records.jsonl").write_text('{"round": 0}\n{"round": 1}\n')
    s = G.cell_status(cell)  # no checkpoint beside them: launching again starts over
    assert (s.state, s.rounds, s.total) == (G.INCOMPLETE, 0, 3)
    (cell.path / "checkpoint.pt").write_bytes(b"x")
    s = G.cell_status(cell)
    assert (s.state, s.rounds, s.total) == (G.INCOMPLETE, 2, 3)
    (cell.path / "failed").write_text("Traceback (most recent call last):\n  x\n  y\n"
                                      "ValueError: bad dropout\n")
    s = G.cell_status(cell)
    assert s.state == G.FAILED_STATE and s.error_tail(2) == "  y\nValueError: bad dropout"
    assert "| ValueError: bad dropout" in G.format_status([s])
    (cell.path / "done").write_text("x")
    s = G.cell_status(cell)  # done, but round 2 of 0..2 is not in the records: damaged
    assert s.state == G.INCOMPLETE and "damaged (round(s) 2 missing)" in s.detail
    with open(cell.path / "records.jsonl", "a") as f:
        f.write('{"round": 2}\n')
    assert G.cell_status(cell).state == G.DONE_STATE


def test_status_of_a_slurm_job_follows_the_scheduler(cell):
    job_file(cell)
    assert G.cell_status(cell, {"5_0": "PENDING"}).state == G.QUEUED
    assert G.cell_status(cell, {"5_0": "RUNNING"}).state == G.RUNNING
    assert G.cell_status(cell, {"5_0": "REQUEUED"}).state == G.RUNNING
    s = G.cell_status(cell, {"5_0": "CANCELLED"})
    assert s.state == G.INCOMPLETE and "CANCELLED" in s.detail
    assert G.cell_status(cell, {}).state == G.QUEUED  # just submitted: sacct lags
    job_file(cell, submitted=time.time() - 2 * G.GRACE_S)
    assert G.cell_status(cell, {}).state == G.INCOMPLETE


def test_status_of_a_failed_slurm_task_shows_its_log_not_its_pickle(cell, tmp_path):
    from submitit.core.utils import JobPaths

    folder = tmp_path / "submitit"
    paths = JobPaths(folder, job_id="5_0", task_id=0)
    paths.result_pickle.parent.mkdir(parents=True)
    paths.result_pickle.write_bytes(pickle.dumps(("error", "from the pickle")))
    paths.stderr.write_text("Traceback\nUncompletedJobError: timed-out too many times\n")
    job_file(cell, folder=str(folder))
    s = G.cell_status(cell, {"5_0": "FAILED"})
    assert s.state == G.FAILED_STATE and "timed-out too many times" in s.error
    assert "from the pickle" not in s.error


def test_status_of_a_local_cell_follows_its_process(cell):
    job_file(cell, executor="local", job_id=None, pid=__import__("os").getpid())
    assert G.cell_status(cell).state == G.QUEUED       # its launcher lives, it has not started
    job_file(cell, executor="local", job_id=None, pid=-1)
    assert G.cell_status(cell).state == G.INCOMPLETE   # launcher gone before it started
    (cell.path / G.ATTEMPT_FILE).write_text(json.dumps(
        {"host": socket.gethostname(), "pid": __import__("os").getpid(), "started": time.time()}))
    assert G.cell_status(cell).state == G.RUNNING
    (cell.path / G.ATTEMPT_FILE).write_text(json.dumps(
        {"host": socket.gethostname(), "pid": 2 ** 22 + 12345, "started": time.time()}))
    assert G.cell_status(cell).state == G.INCOMPLETE


# --------------------------------------------------------------------------------------------
# end to end on the tiny backbone, in this process (debug) and in worker processes (local)
@pytest.fixture
def failing_grid(tmp_path, toy_data, tiny_overrides):
    """Two good cells and one whose data only fails when the cell loads it."""
    broken = tmp_path / "broken.csv"
    broken.write_text("text,y\nsome text,a\n")
    return G.Grid("g", ["random"], [str(toy_data)], seeds=[0, 1], preset="smoke",
                  overrides=dict(tiny_overrides),
                  include=[{"method": "entropy", "dataset": str(broken), "seed": 0}])


def test_only_runs_the_cells_whose_names_match_and_a_pattern_matching_nothing_fails(
        tmp_path, toy_data, tiny_overrides, capsys):
    from benchmark.cli import main

    spec = write_grid(tmp_path / "g.yaml", methods=["random", "entropy"], datasets=[str(toy_data)],
                      seeds=[0, 1], preset="smoke", overrides={**tiny_overrides, "rounds": 1})
    grid, out = G.Grid.load(spec), tmp_path / "out"
    logs = []
    picked = G.launch(grid, out, "debug", dry_run=True, only=["entropy_*", "*_s1_*"],
                      log=logs.append)
    assert sorted(c.name.rsplit("_", 1)[0] for c in picked) == [
        f"entropy_{toy_data.name}_al_s0", f"entropy_{toy_data.name}_al_s1",
        f"random_{toy_data.name}_al_s1"]
    assert logs[0] == "grid g: --only leaves out 1 of the 4 cells to run"
    args = ["grid", "launch", str(spec), "--executor", "debug", "--out", str(out)]
    assert main([*args, "--only", "badge_*"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --only 'badge_*' matches none of grid g's 4 cells (names like ")
    assert not out.exists()                               # refused before anything ran


def test_debug_executor_failure_status_retry_and_no_resubmission(failing_grid, tmp_path,
                                                                 monkeypatch):
    import pdb

    monkeypatch.setattr(pdb, "post_mortem", lambda *a, **k: None)  # debug executor's pdb
    out, logs = tmp_path / "out", []
    submitted = G.launch(failing_grid, out, "debug", log=logs.append)
    assert len(submitted) == 3
    statuses = {s.cell.cfg["method"]: s for s in G.grid_status(failing_grid.cells(out))}
    assert [s.state for s in G.grid_status(failing_grid.cells(out))].count(G.DONE_STATE) == 2
    bad = statuses["entropy"]
    assert bad.state == G.FAILED_STATE and "no column 'label'" in bad.error
    # launching again submits nothing, and says so
    logs.clear()
    assert G.launch(failing_grid, out, "debug", log=logs.append) == []
    assert "nothing to submit" in logs[0] and "grid retry" in logs[0]
    # a cell whose process died mid-run is incomplete: a second launch resumes it
    good = next(s.cell for s in G.grid_status(failing_grid.cells(out)) if s.state == G.DONE_STATE)
    (good.path / "done").unlink()
    (good.path / G.ATTEMPT_FILE).write_text(json.dumps(
        {"host": socket.gethostname(), "pid": 2 ** 22 + 12345, "started": time.time()}))
    assert G.cell_status(good).state == G.INCOMPLETE
    assert G.launch(failing_grid, out, "debug", log=logs.append) == [good]
    assert G.cell_status(good).state == G.DONE_STATE
    # retry picks the failed cell only
    assert G.launch(failing_grid, out, "debug", retry=True, dry_run=True,
                    log=logs.append) == [bad.cell]
    assert G.launch(failing_grid, out, "debug", retry=True, log=logs.append) == [bad.cell]
    assert (bad.cell.path / "failed.prev").exists()  # the earlier error kept beside it


def test_a_grid_does_not_mix_precisions_unless_asked_and_the_analysis_notes_a_mix(
        tmp_path, toy_data, tiny_overrides, capsys, monkeypatch):
    """``amp: auto`` resolves per machine (bf16 with native bf16, fp32 without): cells left
    for this machine are refused when the grid's finished cells ran at the other precision."""
    import pdb

    from analysis.load import load_results
    from benchmark.cli import main

    monkeypatch.setattr(pdb, "post_mortem", lambda *a, **k: None)
    spec = write_grid(tmp_path / "g.yaml", methods=["random"], datasets=[str(toy_data)],
                      seeds=[0, 1], preset="smoke", overrides={**tiny_overrides, "rounds": 1})
    grid, out = G.Grid.load(spec), tmp_path / "out"
    first, second = grid.cells(out)
    run_experiment(first.cfg, out, log=lambda *_: None)
    meta = json.loads((first.path / "meta.json").read_text())
    here = meta["device"]["bf16_autocast"]
    meta["device"]["bf16_autocast"] = not here  # as if it ran on the other kind of machine
    (first.path / "meta.json").write_text(json.dumps(meta))
    args = ["grid", "launch", str(spec), "--executor", "debug", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    was, now = ("fp32", "bf16") if here else ("bf16", "fp32")
    assert err.startswith(f"error: grid g: finished cells ran 1 in {was}, but this machine (")
    assert f"would run the 1 left in {now}" in err and "\n" not in err
    assert f"ACTUNE_AMP_AUTO={was}" in err
    assert not second.path.exists()  # refused before anything ran
    assert main([*args, "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("warning: grid g: finished cells ran 1 in")
    monkeypatch.setenv("ACTUNE_AMP_AUTO", was)      # amp=auto pinned to the finished cells'
    assert main([*args, "--dry-run"]) == 0
    assert "warning" not in capsys.readouterr().out
    monkeypatch.delenv("ACTUNE_AMP_AUTO")
    assert main([*args, "--allow-mixed-precision"]) == 0
    assert G.cell_status(second).state == G.DONE_STATE
    res = load_results(out)
    assert res.runs.set_index("run")["precision"].to_dict() == {
        first.path.name: was, second.path.name: now}
    [note] = [p for p in res.problems if "precisions" in p]
    assert note.startswith(f"{toy_data.name}: runs at 2 precisions (")


@pytest.mark.slow  # two worker processes each import torch + transformers (~10 s)
def test_local_executor_runs_cells_in_worker_processes(tmp_path, toy_data, tiny_overrides, capsys):
    from benchmark.cli import main

    grid = write_grid(tmp_path / "g.yaml", methods=["random", "entropy"],
                      datasets=[str(toy_data)], seeds=[0], preset="smoke",
                      overrides={**tiny_overrides, "rounds": 1})
    out = tmp_path / "out"
    assert main(["grid", "launch", str(grid), "--executor", "local", "--workers", "2",
                 "--out", str(out)]) == 0
    cells = G.Grid.load(grid).cells(out)
    for c in cells:
        attempt = json.loads((c.path / G.ATTEMPT_FILE).read_text())
        assert attempt["pid"] != __import__("os").getpid()  # ran in a worker
        assert len(RunStore(out, c.cfg).records()) == 2
    capsys.readouterr()
    assert main(["grid", "status", str(grid), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "2 done"


def test_time_left_uses_the_finished_cells_closest_to_each_unfinished_one(tmp_path):
    """Hand-computed: each unfinished cell needs, for the rounds it has not recorded, the mean
    time of the finished cells of its method, dataset and setting (else dataset and setting,
    else all)."""
    def status(method, dataset, state, *round_s):
        cfg = {"method": method, "dataset_name": dataset, "setting": "al"}
        return G.CellStatus(G.Cell(cfg, tmp_path / method), state, len(round_s), 3,
                            round_seconds=dict(enumerate(round_s)))
    statuses = [status("a", "trec", G.DONE_STATE, 600, 1200, 1800),
                status("a", "trec", G.DONE_STATE, 1200, 2400, 3600),
                status("b", "trec", G.DONE_STATE, 300, 600, 900),
                status("a", "trec", G.RUNNING, 900, 1800),   # as fast as the finished: 2700
                status("c", "trec", G.QUEUED),               # (3600 + 7200 + 1800) / 3 = 4200
                status("a", "sst2", G.NOT_LAUNCHED)]         # all finished: 4200
    assert G.time_left([s for s in statuses if s.state != G.DONE_STATE]) is None
    done_h, left_h, basis = G.time_left(statuses)
    assert done_h == pytest.approx(12600 / 3600)
    assert left_h == pytest.approx((2700 + 4200 + 4200) / 3600)
    assert basis == ("1 from finished cells of the same method, dataset and setting, "
                     "1 from the same dataset and setting, 1 from all finished cells")
    assert "left: about 3.1 worker-hours" in G.format_status(statuses)


def test_time_left_scales_by_the_pace_of_the_rounds_recorded_since(tmp_path):
    """A study moved to a machine 4x slower: its unfinished cells' recorded rounds took 4x the
    finished cells' same rounds, so each round still to run is counted 4x (hand-computed)."""
    def status(method, state, *round_s):
        cfg = {"method": method, "dataset_name": "trec", "setting": "al"}
        return G.CellStatus(G.Cell(cfg, tmp_path / method), state, len(round_s), 3,
                            round_seconds=dict(enumerate(round_s)))
    statuses = [status("a", G.DONE_STATE, 100, 200, 300),
                status("b", G.DONE_STATE, 100, 100, 100),
                status("a", G.INCOMPLETE, 400),          # its own pace 4: 4 x (200 + 300)
                status("b", G.RUNNING, 500, 700),        # its own pace 6: 6 x 100
                status("c", G.NOT_LAUNCHED)]             # the recorded rounds' pace
    pace = (400 + 1200) / (100 + 200)                    # = 5.33: 5.3 x (600 + 300) / 2
    _, left_h, basis = G.time_left(statuses)
    assert left_h == pytest.approx((4 * 500 + 6 * 100 + pace * 450) / 3600)
    assert basis.endswith("; x5.3: the unfinished cells' recorded rounds took 5.3x as long as "
                          "the same rounds of those")


def test_a_requeue_that_killed_its_own_scontrol_exits_as_requeued_not_failed():
    """SLURM terminates the job it requeues, ``scontrol requeue`` included: submitit's handler
    then raises CalledProcessError (seen on a loaded node); the wrapper turns exactly that case
    into the requeue's exit, and leaves every other error to fail the cell."""
    import os
    import signal
    import subprocess

    from benchmark.grid.launch import REQUEUE_SIGNAL, _tolerate_killed_requeue

    errors = []

    def submitit_like(sig, frame):  # stands in for SignalHandler.checkpoint_and_try_requeue
        raise errors[-1]

    previous = signal.signal(REQUEUE_SIGNAL, submitit_like)
    try:
        _tolerate_killed_requeue(REQUEUE_SIGNAL)
        _tolerate_killed_requeue(REQUEUE_SIGNAL)  # a second cell in the process: no re-wrap
        wrapped = signal.getsignal(REQUEUE_SIGNAL)
        assert wrapped is not submitit_like and wrapped.tolerates_killed_requeue
        errors.append(subprocess.CalledProcessError(-signal.SIGTERM, ["scontrol", "requeue", "7"]))
        with pytest.raises(SystemExit):
            os.kill(os.getpid(), REQUEUE_SIGNAL)  # delivered to this (main) thread
            time.sleep(1)
        for other in (subprocess.CalledProcessError(1, ["scontrol", "requeue", "7"]),
                      subprocess.CalledProcessError(-signal.SIGTERM, ["scancel", "7"]),
                      RuntimeError("checkpoint failed")):
            errors.append(other)
            with pytest.raises(type(other)):
                wrapped(REQUEUE_SIGNAL, None)
    finally:
        signal.signal(REQUEUE_SIGNAL, previous)
