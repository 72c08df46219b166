"""Grids against the real single-node SLURM cluster: completion, time-out + requeue, failure +
retry, no double submission. Cells use the tiny backbone, so each takes seconds."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from benchmark import grid as G
from benchmark.results import RunStore

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 300


def without_times(records):
    """Records minus what depends on the wall clock."""
    out = []
    for r in records:
        r = {k: v for k, v in r.items() if k != "time"}
        r["train"] = {k: v for k, v in r["train"].items() if "time" not in k and "seconds" not in k}
        out.append(r)
    return out


def test_smoke_grid_completes_and_a_second_launch_submits_nothing(cluster, tmp_path,
                                                                   shared_data, tiny_overrides,
                                                                   capsys):
    from benchmark.cli import main

    out = tmp_path / "out"
    grid = G.Grid.load(ROOT / "grids" / "smoke.yaml").with_overrides(tiny_overrides)
    grid.data_dir = str(shared_data)
    submitted = G.launch(grid, out, "slurm")
    assert len(submitted) == len(grid.cells(out)) >= 4
    job_ids = {json.loads((c.path / G.JOB_FILE).read_text())["job_id"] for c in submitted}
    assert len(job_ids) == len(submitted) and len({j.split("_")[0] for j in job_ids}) == 1
    statuses = G.wait_for(grid.cells(out), poll_s=1, timeout_s=WAIT_S)
    assert [s.state for s in statuses] == [G.DONE_STATE] * len(statuses), \
        G.format_status(statuses)
    for c in grid.cells(out):
        assert len(RunStore(out, c.cfg).records()) == c.cfg["rounds"] + 1
    logs = []
    assert G.launch(grid, out, "slurm", log=logs.append) == []
    assert logs == [f"grid smoke: nothing to submit, all {len(submitted)} cells already "
                    f"launched ({len(submitted)} done)"]
    # the command line says the same
    spec = tmp_path / "smoke.yaml"
    spec.write_text((ROOT / "grids" / "smoke.yaml").read_text())
    sets = [a for k, v in tiny_overrides.items() for a in ("--set", f"{k}={v}")]
    capsys.readouterr()
    main(["grid", "status", str(spec), "--out", str(out), "--data-dir", str(shared_data), *sets])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"{len(submitted)} done"
    assert sum(" done " in line for line in lines[1:-1]) == len(submitted)


def test_timed_out_cell_is_requeued_and_resumes_to_the_same_records(cluster, tmp_path, toy_data,
                                                                     tiny_overrides):
    from submitit.slurm.slurm import SlurmJob

    slow = {**tiny_overrides, "rounds": 5, "min_steps": 60, "eval_every": 20}
    grid = G.Grid("timeout", ["entropy"], [str(toy_data)], preset="smoke", overrides=slow)
    out, ref_out = tmp_path / "out", tmp_path / "reference"
    (cell,) = G.launch(grid, out, "slurm")
    (ref_cell,) = G.launch(grid, ref_out, "slurm")  # the same cell, never interrupted
    job = json.loads((cell.path / G.JOB_FILE).read_text())
    store = RunStore(out, cell.cfg)
    deadline = time.time() + WAIT_S
    while not store.records() and time.time() < deadline:
        time.sleep(0.1)
    assert store.records() and not store.done, "the cell finished before it could be timed out"
    before = len(store.records())
    SlurmJob(job["folder"], job["job_id"])._interrupt(timeout=True)
    statuses = G.wait_for([cell, ref_cell], poll_s=1, timeout_s=WAIT_S)
    assert [s.state for s in statuses] == [G.DONE_STATE] * 2, G.format_status(statuses)
    log = Path(SlurmJob(job["folder"], job["job_id"]).paths.stdout).read_text()
    assert "Requeued job" in log
    assert "resuming after round" in log
    resumed_after = int(log.split("resuming after round")[1].split()[0])
    assert resumed_after >= before - 1
    reference = RunStore(ref_out, ref_cell.cfg).records()
    assert len(reference) == cell.cfg["rounds"] + 1
    assert without_times(store.records()) == without_times(reference)


def test_failing_cell_is_reported_and_retry_relaunches_only_it(cluster, tmp_path, toy_data,
                                                               tiny_overrides):
    broken = tmp_path / "broken.csv"  # fails when the cell loads it, not at submission
    broken.write_text("text,y\nsome text,a\n")
    grid = G.Grid("faulty", ["random"], [str(toy_data)], seeds=[0, 1], preset="smoke",
                  overrides=dict(tiny_overrides),
                  include=[{"method": "entropy", "dataset": str(broken), "seed": 0}])
    out = tmp_path / "out"
    assert len(G.launch(grid, out, "slurm")) == 3
    statuses = G.wait_for(grid.cells(out), poll_s=1, timeout_s=WAIT_S)
    by_method = {s.cell.cfg["method"]: s for s in statuses}
    assert [s.state for s in statuses].count(G.DONE_STATE) == 2, G.format_status(statuses)
    bad = by_method["entropy"]
    assert bad.state == G.FAILED_STATE and "no column 'label'" in bad.error_tail()
    jobs_before = {s.cell.name: json.loads((s.cell.path / G.JOB_FILE).read_text())["job_id"]
                   for s in statuses}
    assert G.launch(grid, out, "slurm", retry=True) == [bad.cell]
    jobs_after = {s.cell.name: json.loads((s.cell.path / G.JOB_FILE).read_text())["job_id"]
                  for s in statuses}
    changed = [name for name in jobs_before if jobs_before[name] != jobs_after[name]]
    assert changed == [bad.cell.name]
    again = G.wait_for([bad.cell], poll_s=1, timeout_s=WAIT_S)[0]
    assert again.state == G.FAILED_STATE and "no column 'label'" in again.error
