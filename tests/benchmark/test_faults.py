"""Fault matrix: every way a run or a grid is cut, doubled, poisoned or starved of disk ends with
records identical to an uninterrupted run (each round once, none lost), or with one clear
``error:`` line and exit code 2. Smoke preset, tiny backbone, a toy dataset.

Faults that need a real kernel (a full disk, a read-only mount) use a small tmpfs or a
read-only bind mount when the tests run as root, and chmod otherwise; a simulated full disk
runs everywhere.
"""
from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from analysis.load import load_results
from benchmark import grid as G
from benchmark.cli import main
from benchmark.config import resolve
from benchmark.loop import run_experiment
from benchmark import results as R
from benchmark.results import RunStore

ROOT = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()
QUIET = dict(log=lambda *_: None)
LOCK = "lock"  # the run folder's lock file (benchmark.results.LOCK)


def result(records):
    """What a run computes: its records less wall-clock times."""
    return [{k: v for k, v in r.items() if k not in ("time", "train")}
            | {"train": {k: v for k, v in r["train"].items() if "seconds" not in k}}
            for r in records]


def on_disk(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "records.jsonl").read_text().splitlines()]


def rounds_on_disk(folder: Path) -> list[int]:
    return [r["round"] for r in on_disk(folder)]


def set_args(overrides: dict) -> list[str]:
    return [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]


# One dataset and one set of overrides for the module, so that an uninterrupted run of each
# config is computed once (``reference``) and every fault is compared with it.
@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("_shared_fixtures",
                                                  ROOT / "tests" / "conftest.py")
    shared = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shared)
    return shared.write_toy_dataset(tmp_path_factory.mktemp("data") / "toy")


@pytest.fixture(scope="module")
def tiny_overrides(tiny_backbone):
    return {"backbone": tiny_backbone, "pool_size": 120, "initial_size": 12, "budget": 8,
            "rounds": 2, "dev_size": 30, "test_size": 30, "epochs": 1, "min_steps": 4,
            "st_steps": 4, "eval_every": 2, "max_length": 24}


@pytest.fixture(scope="module")
def slow_overrides(tiny_overrides):
    """Rounds long enough (a second or more each) for a signal to land inside one."""
    return {**tiny_overrides, "min_steps": 60, "eval_every": 20, "threads": 1}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Records of uninterrupted runs, computed once per config."""
    done = {}

    def get(cfg, data_dir=None):
        key = json.dumps(cfg, sort_keys=True, default=str)
        if key not in done:
            out = tmp_path_factory.mktemp("reference")
            done[key] = result(run_experiment(cfg, out, data_dir, **QUIET))
        return done[key]
    return get


def cli_process(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "benchmark", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def wait_until(condition, timeout_s=120.0, what="condition"):
    start = time.time()
    while not condition():
        if time.time() - start > timeout_s:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def recorded(folder: Path) -> bool:
    """Round 0 is on disk."""
    try:
        return (folder / "records.jsonl").stat().st_size > 0
    except FileNotFoundError:
        return False


def alive(pid: int) -> bool:
    """Some thread of the process still runs (a zombie leader may wait for its other threads,
    which still hold its files)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        try:
            if (task / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                return True
        except (OSError, IndexError):
            pass
    return False


def one_error_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ================================================================================================
# concurrency: exactly one writer per run folder
def test_a_second_run_while_one_runs_stops_at_once(toy_data, tiny_overrides, tmp_path,
                                                   reference, capsys):
    """Today: the second run resumes from the first's checkpoint and both write the rounds."""
    cfg = resolve("entropy", str(toy_data), 0, "al", "smoke", tiny_overrides)
    args = ["run", "--method", "entropy", "--dataset", str(toy_data), "--preset", "smoke",
            "--out", str(tmp_path), *set_args(tiny_overrides)]
    codes = []

    def second_writer(line):
        if line.startswith("round  0"):
            start = time.time()
            codes.append((main(args), time.time() - start))
    run_experiment(cfg, tmp_path, log=second_writer)
    (code, seconds), = codes
    err = one_error_line(capsys.readouterr().err)
    folder = RunStore(tmp_path, cfg).path
    assert code == 2 and seconds < 10
    assert err == f"error: {folder} is already running (pid {os.getpid()} on {HOST})"
    assert rounds_on_disk(folder) == [0, 1, 2]
    assert result(on_disk(folder)) == reference(cfg)
    assert not (folder / LOCK).exists()  # released on the way out


@pytest.mark.slow  # two CLI processes (~10 s)
def test_two_identical_run_commands_write_every_round_once(toy_data, slow_overrides, tmp_path,
                                                           reference):
    """Two `run` commands at once: the one that gets the lock runs; the other stops with the
    holder's pid and host. (The first is paused after its round 0 so that they overlap.)"""
    args = ["run", "--method", "entropy", "--dataset", str(toy_data), "--preset", "smoke",
            "--out", str(tmp_path), *set_args(slow_overrides)]
    cfg = resolve("entropy", str(toy_data), 0, "al", "smoke", slow_overrides)
    folder = RunStore(tmp_path, cfg).path
    first = cli_process(args)
    try:
        wait_until(lambda: recorded(folder), what="round 0 of the first run")
        first.send_signal(signal.SIGSTOP)
        second = cli_process(args)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2
        assert one_error_line(err) == (f"error: {folder} is already running "
                                       f"(pid {first.pid} on {HOST})")
    finally:
        first.send_signal(signal.SIGCONT)
    first.communicate(timeout=300)
    assert first.returncode == 0
    assert rounds_on_disk(folder) == [0, 1, 2]
    assert result(on_disk(folder)) == reference(cfg)


@pytest.mark.slow  # one CLI process (~8 s)
def test_kill_9_mid_round_leaves_a_stale_lock_that_the_next_run_takes_over(
        toy_data, slow_overrides, tmp_path, reference):
    cfg = resolve("entropy", str(toy_data), 0, "al", "smoke", slow_overrides)
    folder = RunStore(tmp_path, cfg).path
    proc = cli_process(["run", "--method", "entropy", "--dataset", str(toy_data), "--preset",
                        "smoke", "--out", str(tmp_path), *set_args(slow_overrides)])
    wait_until(lambda: recorded(folder), what="round 0")
    proc.kill()
    proc.communicate()
    assert json.loads((folder / LOCK).read_bytes().rstrip(b"\0"))["pid"] == proc.pid  # stale
    assert not (folder / "done").exists()
    lines = []
    records = run_experiment(cfg, tmp_path, log=lines.append)
    assert any(line.startswith("resuming after round") for line in lines)
    assert rounds_on_disk(folder) == [0, 1, 2] and result(records) == reference(cfg)
    meta = json.loads((folder / "meta.json").read_text())  # first start kept, resume appended
    assert len(meta["resumes"]) == 1 and meta["started"] <= meta["resumes"][0]["started"]


def test_a_lock_file_of_a_dead_process_is_taken_over(toy_data, tiny_overrides, tmp_path,
                                                     reference):
    cfg = resolve("random", str(toy_data), 0, "al", "smoke", tiny_overrides)
    folder = RunStore(tmp_path, cfg).path
    folder.mkdir(parents=True)
    (folder / LOCK).write_text(json.dumps({"pid": 2 ** 22 + 17, "host": "gone-node"}))
    assert R.lock_holder(folder) is None  # a file nobody locks holds nothing
    assert result(run_experiment(cfg, tmp_path, **QUIET)) == reference(cfg)


def test_status_reads_the_lock_so_a_running_cell_is_never_incomplete(toy_data, tiny_overrides,
                                                                     tmp_path):
    grid = G.Grid("g", ["random"], [str(toy_data)], preset="smoke", overrides=tiny_overrides)
    cell, = grid.cells(tmp_path)
    store = RunStore(tmp_path, cell.cfg)
    with store.lock():  # a process (this one) runs the cell; its launcher and attempt are gone
        cell.path.joinpath(G.JOB_FILE).write_text(json.dumps(
            {"executor": "local", "job_id": None, "submitted": time.time() - 60,
             "host": HOST, "pid": 2 ** 22 + 17}))
        cell.path.joinpath(G.ATTEMPT_FILE).write_text(json.dumps(
            {"host": HOST, "pid": 2 ** 22 + 18, "started": time.time()}))
        s, = G.grid_status([cell])
        assert (s.state, s.detail) == (G.RUNNING, f"pid {os.getpid()} on {HOST}")
        assert G.launch(grid, tmp_path, "debug", **QUIET) == []  # never run a second time
        with pytest.raises(R.RunBusy):
            run_experiment(cell.cfg, tmp_path, **QUIET)
    assert G.grid_status([cell])[0].state == G.INCOMPLETE


@pytest.mark.slow  # a launcher process and its two workers (~30 s each)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_local_workers_stop_when_their_launcher_dies(sig, toy_data, slow_overrides, tmp_path,
                                                     reference):
    """Today the workers run on through the cells handed to them, status calls those cells
    incomplete, a relaunch runs them again and records hold rounds twice."""
    spec = {"methods": ["random", "entropy"], "datasets": [str(toy_data)], "seeds": [0],
            "preset": "smoke", "overrides": {**slow_overrides, "rounds": 5}}
    (tmp_path / "g.yaml").write_text(json.dumps(spec))
    out = tmp_path / "out"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "benchmark", "grid", "launch", str(tmp_path / "g.yaml"),
         "--executor", "local", "--workers", "2", "--out", str(out)], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    grid = G.Grid.load(tmp_path / "g.yaml")
    cells = grid.cells(out)
    for cell in cells:  # each worker is inside its cell
        wait_until(lambda: recorded(cell.path), what=f"round 0 of {cell.name}")
    workers = [json.loads((c.path / G.ATTEMPT_FILE).read_text())["pid"] for c in cells]
    assert launcher.pid not in workers
    assert {s.state for s in G.grid_status(cells)} <= {G.RUNNING, G.DONE_STATE}
    launcher.send_signal(sig)
    launcher.wait()
    wait_until(lambda: not any(map(alive, workers)), timeout_s=10, what="the workers to stop")
    cut = [s.cell for s in G.grid_status(cells) if s.state != G.DONE_STATE]
    assert cut and all(s.state == G.INCOMPLETE for s in G.grid_status(cut))
    assert G.launch(grid, out, "debug", **QUIET) == cut  # they resume
    assert G.format_status(G.grid_status(cells)).splitlines()[-1] == "2 done"
    for cell in grid.cells(out):
        assert rounds_on_disk(cell.path) == [0, 1, 2, 3, 4, 5]
        assert result(on_disk(cell.path)) == reference(cell.cfg)


def test_duplicate_rounds_are_a_problem_for_the_analysis_not_silently_dropped(
        toy_data, tiny_overrides, tmp_path):
    cfg = resolve("random", str(toy_data), 0, "al", "smoke", tiny_overrides)
    records = run_experiment(cfg, tmp_path, **QUIET)
    folder = RunStore(tmp_path, cfg).path
    with open(folder / "records.jsonl", "a") as f:  # what two writers used to leave
        f.write("".join(json.dumps(r) + "\n" for r in records[1:]))
    res = load_results(tmp_path)
    assert any("round(s) 1, 2 recorded more than once" in p for p in res.problems)
    assert any("marked done but damaged" in p for p in res.problems)
    assert sorted(res.rounds["round"]) == [0, 1, 2]
    assert not res.runs["complete"].any()


# ================================================================================================
# security: nothing read from a results folder runs code
class Payload:
    """Unpickling this creates a file: the proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("method, setting", [("actune", "ssal"), ("cosine", "ssal")])
def test_checkpoints_are_plain_data_and_resume_to_the_same_records(
        method, setting, toy_data, tiny_overrides, tmp_path, reference, stop_after_round):
    """ACTUNE's memory bank, COSINE's class frequencies and soft pseudo-labels round-trip
    through a checkpoint that ``torch.load(weights_only=True)`` reads."""
    cfg = resolve(method, str(toy_data), 0, setting, "smoke",
                  {**tiny_overrides, "rounds": 3, "pool_size": 120})
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path, log=stop_after_round(1))
    folder = RunStore(tmp_path, cfg).path
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert state["round"] == 1
    resumed = run_experiment(cfg, tmp_path, **QUIET)
    assert rounds_on_disk(folder) == [0, 1, 2, 3] and result(resumed) == reference(cfg)


def test_a_planted_checkpoint_runs_nothing(toy_data, tiny_overrides, tmp_path, reference,
                                           capsys, stop_after_round):
    """Today ``torch.load(weights_only=False)`` runs the planted pickle."""
    cfg = resolve("actune", str(toy_data), 0, "ssal", "smoke", tiny_overrides)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path, log=stop_after_round(0))
    folder = RunStore(tmp_path, cfg).path
    marker = tmp_path / "code-ran"
    torch.save({"round": 0, "records": [Payload(marker)]}, folder / "checkpoint.pt")
    records = run_experiment(cfg, tmp_path, **QUIET)
    assert not marker.exists()
    assert "unreadable as plain data" in capsys.readouterr().out
    assert (folder / "checkpoint.corrupt").exists()  # kept aside, never loaded
    assert result(records) == reference(cfg)


def test_a_planted_submitit_result_runs_nothing_on_status_or_launch(toy_data, tiny_overrides,
                                                                    tmp_path, capsys):
    """Today ``grid status`` and ``grid launch`` unpickle the result file grid_job.json names."""
    from submitit.core.utils import JobPaths

    spec = {"methods": ["random"], "datasets": [str(toy_data)], "preset": "smoke",
            "overrides": tiny_overrides}
    (tmp_path / "g.yaml").write_text(json.dumps(spec))
    out, marker = tmp_path / "out", tmp_path / "code-ran"
    cell, = G.Grid.load(tmp_path / "g.yaml").cells(out)
    folder = tmp_path / "planted"
    result_file = JobPaths(folder, job_id="77_0", task_id=0).result_pickle
    result_file.parent.mkdir(parents=True)
    result_file.write_bytes(pickle.dumps(("error", Payload(marker))))
    cell.path.mkdir(parents=True)
    (cell.path / G.JOB_FILE).write_text(json.dumps(
        {"executor": "slurm", "job_id": "77_0", "folder": str(folder), "submitted": 0,
         "host": HOST, "pid": 1}))
    assert main(["grid", "status", str(tmp_path / "g.yaml"), "--out", str(out)]) == 0
    assert main(["grid", "launch", str(tmp_path / "g.yaml"), "--out", str(out),
                 "--dry-run"]) == 0
    assert not marker.exists()
    assert "would submit" in capsys.readouterr().out  # job unknown to SLURM: incomplete


# ================================================================================================
# I/O faults
@contextlib.contextmanager
def read_only(path: Path):
    """``path`` read-only for this process: a read-only bind mount as root, chmod otherwise."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    if subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode:
        pytest.skip("root, but no bind mount here: cannot make a folder read-only for root")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


@contextlib.contextmanager
def small_disk(path: Path, size: str = "2m"):
    """A real file system of ``size`` at ``path`` (tmpfs; needs root)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True).returncode:
        pytest.skip("a real full disk needs root to mount a small tmpfs")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(disk: Path) -> Path:
    """Write zeros until the file system is full."""
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return ballast


def run_args(toy_data, out, overrides):
    return ["run", "--method", "entropy", "--dataset", str(toy_data), "--preset", "smoke",
            "--out", str(out), *set_args(overrides)]


def test_read_only_output_folder_is_one_error_line(toy_data, tiny_overrides, tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    with read_only(out):
        assert main(run_args(toy_data, out, tiny_overrides)) == 2
    err = one_error_line(capsys.readouterr().err)
    assert err.startswith(f"error: cannot write to {out}/entropy_toy_al_s0_")
    assert err.endswith(("Read-only file system", "Permission denied"))
    assert list(out.iterdir()) == []


def test_a_run_folder_gone_read_only_mid_study_resumes_when_writable(
        toy_data, tiny_overrides, tmp_path, reference, capsys, stop_after_round):
    cfg = resolve("entropy", str(toy_data), 0, "al", "smoke", tiny_overrides)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path, log=stop_after_round(0))
    folder = RunStore(tmp_path, cfg).path
    with read_only(folder):
        assert main(run_args(toy_data, tmp_path, tiny_overrides)) == 2
    one_error_line(capsys.readouterr().err)
    assert main(run_args(toy_data, tmp_path, tiny_overrides)) == 0
    assert rounds_on_disk(folder) == [0, 1, 2] and result(on_disk(folder)) == reference(cfg)


def test_a_full_disk_is_one_error_line_and_the_run_resumes(toy_data, tiny_overrides, tmp_path,
                                                           reference, monkeypatch, capsys):
    """A real full file system, filled right after round 0 is recorded: the next checkpoint
    fails. Today: a raw traceback (exit 1), an empty ``failed``, a checkpoint.pt.tmpPID left."""
    cfg = resolve("entropy", str(toy_data), 0, "al", "smoke", tiny_overrides)
    with small_disk(tmp_path / "disk") as disk:
        folder = RunStore(disk, cfg).path
        append, filled = RunStore.append, []

        def append_then_fill(self, record):
            append(self, record)
            if not filled:
                filled.append(fill(disk))
        monkeypatch.setattr(RunStore, "append", append_then_fill)
        assert main(run_args(toy_data, disk, tiny_overrides)) == 2
        err = one_error_line(capsys.readouterr().err)
        assert "No space left on device" in err and "1 of 3 rounds recorded" in err
        assert "No space left on device" in (folder / "failed").read_text()
        assert not list(folder.glob("*.tmp*"))
        monkeypatch.undo()
        filled[0].unlink()
        assert main(run_args(toy_data, disk, tiny_overrides)) == 0
        assert rounds_on_disk(folder) == [0, 1, 2] and result(on_disk(folder)) == reference(cfg)
        assert (folder / "failed.prev").exists() and not (folder / "failed").exists()


def test_a_checkpoint_cut_by_a_full_disk_leaves_no_temporary_file(
        toy_data, tiny_overrides, tmp_path, reference, monkeypatch, capsys):
    """The same fault, simulated (runs without root): half a checkpoint, then ENOSPC."""
    import benchmark.results as R

    cfg = resolve("entropy", str(toy_data), 0, "al", "smoke", tiny_overrides)
    save = torch.save

    def half_then_full(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f.name)
    monkeypatch.setattr(R.torch, "save", half_then_full)
    assert main(run_args(toy_data, tmp_path, tiny_overrides)) == 2
    err = one_error_line(capsys.readouterr().err)
    folder = RunStore(tmp_path, cfg).path
    assert err.startswith(f"error: {folder}/checkpoint.pt.tmp{os.getpid()}: No space left")
    assert "0 of 3 rounds recorded" in err
    assert "OSError: [Errno 28] No space left on device" in (folder / "failed").read_text()
    assert not list(folder.glob("*.tmp*"))
    monkeypatch.setattr(R.torch, "save", save)
    assert main(run_args(toy_data, tmp_path, tiny_overrides)) == 0
    assert result(on_disk(folder)) == reference(cfg)


def test_a_finished_run_with_a_cut_last_line_is_damaged_and_recomputed(
        toy_data, tiny_overrides, tmp_path, reference):
    """Today it says "already done", reports round 1 as final and status shows done 2/3."""
    cfg = resolve("entropy", str(toy_data), 0, "al", "smoke", tiny_overrides)
    run_experiment(cfg, tmp_path, **QUIET)
    folder = RunStore(tmp_path, cfg).path
    data = (folder / "records.jsonl").read_bytes()
    (folder / "records.jsonl").write_bytes(data[:-40])  # the last line cut
    s, = G.grid_status([G.Cell(cfg, folder)])
    assert s.state == G.INCOMPLETE and "damaged (round(s) 2 missing)" in s.detail
    res = load_results(tmp_path)
    assert any("marked done but damaged (round(s) 2 missing)" in p for p in res.problems)
    assert not res.runs["complete"].any()
    lines = []
    records = run_experiment(cfg, tmp_path, log=lines.append)
    assert "marked done but damaged" in lines[0] and "already done" not in lines
    assert rounds_on_disk(folder) == [0, 1, 2] and result(records) == reference(cfg)
    assert G.grid_status([G.Cell(cfg, folder)])[0].state == G.DONE_STATE


def test_a_truncated_checkpoint_restarts_to_the_same_records(toy_data, tiny_overrides,
                                                             tmp_path, reference, stop_after_round):
    cfg = resolve("entropy", str(toy_data), 0, "al", "smoke", tiny_overrides)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path, log=stop_after_round(1))
    ckpt = RunStore(tmp_path, cfg).path / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    assert result(run_experiment(cfg, tmp_path, **QUIET)) == reference(cfg)


def test_meta_keeps_the_first_start_and_appends_each_resume(toy_data, tiny_overrides,
                                                            tmp_path, stop_after_round):
    cfg = resolve("entropy", str(toy_data), 0, "al", "smoke", tiny_overrides)
    folder = RunStore(tmp_path, cfg).path
    for stop in (0, 1):
        with pytest.raises(KeyboardInterrupt):
            run_experiment(cfg, tmp_path, log=stop_after_round(stop))
        if stop == 0:
            first = json.loads((folder / "meta.json").read_text())
    run_experiment(cfg, tmp_path, **QUIET)
    run_experiment(cfg, tmp_path, **QUIET)  # "already done": not a resume
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["started"] == first["started"] and meta["host"] == first["host"]
    assert len(meta["resumes"]) == 2 and all("versions" in r for r in meta["resumes"])


def test_records_without_their_checkpoint_start_over_and_the_meta_says_this_start(
        toy_data, tiny_overrides, tmp_path, stop_after_round):
    """A checkout that kept a cut-short run's records but not its checkpoint (ignored by git)
    recomputes every round here: meta.json then names this machine only, not the one that
    wrote the discarded rounds (which would misattribute every round and its precision)."""
    cfg = resolve("entropy", str(toy_data), 0, "al", "smoke", tiny_overrides)
    folder = RunStore(tmp_path, cfg).path
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path, log=stop_after_round(0))
    meta = json.loads((folder / "meta.json").read_text())
    meta["host"] = "elsewhere"                     # and the other precision: a resume would fail
    meta["device"]["bf16_autocast"] = not meta["device"]["bf16_autocast"]
    (folder / "meta.json").write_text(json.dumps(meta))
    (folder / "checkpoint.pt").unlink()
    lines = []
    run_experiment(cfg, tmp_path, log=lines.append)
    assert not any(line.startswith("resuming") for line in lines)
    assert rounds_on_disk(folder) == [0, 1, 2]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["host"] != "elsewhere" and "resumes" not in meta


def test_a_resume_at_another_precision_is_one_error_line_and_runs_nothing(
        toy_data, tiny_overrides, tmp_path, capsys, stop_after_round):
    """``amp: auto`` is bf16 on one machine and fp32 on another: a run whose recorded rounds
    ran at the other precision refuses to continue here; its folder is left as it was."""
    out = tmp_path / "results"
    cfg = resolve("entropy", str(toy_data), 0, "al", "smoke", tiny_overrides)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, out, log=stop_after_round(0))
    folder = RunStore(out, cfg).path
    meta = json.loads((folder / "meta.json").read_text())
    here = meta["device"]["bf16_autocast"]
    meta["device"]["bf16_autocast"] = not here  # as if round 0 ran on the other kind of CPU
    (folder / "meta.json").write_text(json.dumps(meta))
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != LOCK}
    assert main(run_args(toy_data, out, tiny_overrides)) == 2
    err = one_error_line(capsys.readouterr().err)
    was, now = ("fp32", "bf16") if here else ("bf16", "fp32")
    assert err.startswith(f"error: {folder.name}: its recorded rounds ran in {was}")
    assert f"would continue in {now}" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != LOCK} == before
    meta["device"]["bf16_autocast"] = here  # the machine it started on: it resumes
    (folder / "meta.json").write_text(json.dumps(meta))
    assert main(run_args(toy_data, out, tiny_overrides)) == 0
    assert rounds_on_disk(folder) == [0, 1, 2]
