"""Launching a grid's cells on SLURM (a submitit job array), locally (joblib workers) or in
this process (submitit's debug executor), and waiting for them.

A cell runs as :class:`CellJob`, a submitit ``Checkpointable``: on a time-out or preemption
submitit requeues it, and ``Run`` resumes from the last finished round, so the final records
equal an uninterrupted run's.
"""
from __future__ import annotations

import fnmatch
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import submitit

from ..backbones import AMP_AUTO_ENV
from ..config import ConfigError, check_sources
from ..device import describe, device_info, precision, recorded_precision
from ..registry import UnknownNameError
from ..results import FAILED, META, RunBusy, read_json, write_json
from .spec import SLURM_KEYS, Cell, Grid
from .status import (ACTIVE, ATTEMPT_FILE, DONE_STATE, FAILED_STATE, INCOMPLETE, JOB_FILE,
                     NOT_LAUNCHED, CellStatus, format_status, grid_status, pid_alive,
                     state_counts)


# the signal submitit's SLURM jobs get on a time-out or preemption (sbatch --signal)
REQUEUE_SIGNAL = signal.Signals["SIG" + submitit.slurm.slurm.SlurmJobEnvironment.USR_SIG]


# the submitted callable (must live in the installed package: workers unpickle it by reference)
class CellJob(submitit.helpers.Checkpointable):
    """Run one cell; on a SLURM time-out/preemption submitit requeues it and it resumes.

    All state is on disk (``Run`` checkpoints after every round), so ``checkpoint`` resubmits
    the same callable unchanged.
    """

    def __init__(self, cfg: dict, out: str, data_dir: str | None = None,
                 device: str | None = None):
        self.cfg, self.out, self.data_dir, self.device = cfg, str(out), data_dir, device

    def __call__(self) -> dict:
        from ..loop import Run

        # a cell logs its round lines, never a bar: parallel workers share one terminal
        run = Run(self.cfg, self.out, self.data_dir, self.device,
                  log=lambda line: print(f"{run.store.path.name}: {line}", flush=True),
                  stream=io.StringIO())
        run.store.path.mkdir(parents=True, exist_ok=True)
        job_id = _current_job_id()
        write_json(run.store.path / ATTEMPT_FILE, {
            "host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
            "job_id": job_id})
        if job_id is not None and threading.current_thread() is threading.main_thread():
            _tolerate_killed_requeue(REQUEUE_SIGNAL)
        try:
            records = run.run()  # a requeue exits with SystemExit: not marked failed
        except RunBusy:
            raise  # another process runs this cell: its failure, if any, is its own
        except Exception as exc:  # bad data is refused before the run's lock: mark it here
            if not (run.store.path / FAILED).exists():
                run.store.mark_failed("".join(traceback.format_exception(exc)))
            raise
        return {"run": str(run.store.path), "rounds": len(records),
                "test_acc": records[-1]["test_acc"] if records else None}

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def _tolerate_killed_requeue(signum: int) -> None:
    """Wrap submitit's requeue handler so a requeue that killed its own ``scontrol`` exits as
    a requeue, not as a failed cell.

    SLURM terminates every process of a job it requeues, the ``scontrol requeue`` child
    included; when that SIGTERM lands before ``scontrol`` exits (a busy node), submitit's
    handler raises ``CalledProcessError`` inside the run, which would mark the cell failed
    although the job is already going back to the queue. Exiting as submitit does after a
    requeue leaves the cell incomplete at worst, and ``grid launch`` resumes that.
    """
    handler = signal.getsignal(signum)
    if not callable(handler) or getattr(handler, "tolerates_killed_requeue", False):
        return

    def requeue(sig, frame):
        try:
            handler(sig, frame)
        except subprocess.CalledProcessError as exc:
            if not (exc.returncode < 0 and list(exc.cmd[:2]) == ["scontrol", "requeue"]):
                raise
            print(f"scontrol requeue ended by signal {-exc.returncode} (the requeue "
                  "terminating this job): exiting as requeued", file=sys.stderr, flush=True)
            sys.exit(-1)

    requeue.tolerates_killed_requeue = True
    signal.signal(signum, requeue)


def _current_job_id() -> str | None:
    try:
        return submitit.JobEnvironment().job_id
    except RuntimeError:  # not inside a submitit job (local/debug executor)
        return None


def _run_cell_local(cfg: dict, out: str, data_dir: str | None,
                    launcher: int | None = None) -> str | None:
    """The local executor's worker: run one cell, return its error (None when it finished)."""
    if launcher is not None:
        _stop_with(launcher)
    try:
        CellJob(cfg, out, data_dir)()
        return None
    except RunBusy as exc:
        return f"skipped: {exc}"
    except Exception as exc:  # the traceback is in the run folder's ``failed`` file
        return f"{type(exc).__name__}: {exc}"


_watched: set[int] = set()


def _stop_with(launcher: int, poll_s: float = 0.5) -> None:
    """Exit this worker process as soon as its launcher is gone (killed, or ended without
    cleaning up), mid-cell or not: the cell resumes from its last round when launched again,
    and no orphan keeps running cells the next launch also runs."""
    if launcher in _watched or launcher == os.getpid():  # joblib runs one worker in-process
        return
    _watched.add(launcher)
    parent = os.getppid()

    def watch():
        while (os.getppid() == parent) if parent == launcher else pid_alive(launcher):
            time.sleep(poll_s)
        print(f"worker {os.getpid()}: launcher {launcher} is gone; stopping", flush=True)
        os._exit(1)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()



def slurm_parameters(grid: Grid, flags: dict | None = None) -> dict:
    """submitit AutoExecutor parameters: the grid's ``slurm:`` section, then command-line flags."""
    merged = {**grid.slurm, **{k: v for k, v in (flags or {}).items() if v is not None}}
    params = {SLURM_KEYS[k]: v for k, v in merged.items() if k != "additional"}
    if merged.get("additional"):
        params["slurm_additional_parameters"] = dict(merged["additional"])
    params.setdefault("name", f"actune-{grid.name}")
    return params


def launch(grid: Grid, out: str | Path, executor: str = "slurm", *, retry: bool = False,
           wait: bool = False, dry_run: bool = False, flags: dict | None = None,
           workers: int | None = None, data_dir: str | None = None, poll_s: float = 5.0,
           allow_mixed_precision: bool = False, only: list[str] | None = None,
           log=print) -> list[Cell]:
    """Submit the grid's not-launched and incomplete cells (``retry``: failed and incomplete);
    ``only``: just those whose name matches one of these shell patterns (``'*_sst2_ssal_s2_*'``).

    An incomplete cell (its job or process ended before the last round) resumes from its
    checkpoint, so launching a grid again picks up whatever is missing; a failed cell raised
    and waits for an explicit ``retry``. Done, running and queued cells are never submitted
    again. Run here (``local``, ``debug``), cells must compute at the precision the grid's
    finished cells used (:func:`check_precision`) unless ``allow_mixed_precision``.
    Returns the cells submitted.
    """
    if executor not in ("slurm", "local", "debug"):
        raise ValueError(f"unknown executor {executor!r} (slurm, local or debug)")
    out = Path(out)
    cells = grid.cells(out)
    for pattern in only or ():
        if not any(fnmatch.fnmatchcase(c.name, pattern) for c in cells):
            raise ConfigError(f"--only {pattern!r} matches none of grid {grid.name}'s "
                              f"{len(cells)} cells (names like {cells[0].name})")
    statuses = grid_status(cells)
    wanted = {FAILED_STATE, INCOMPLETE} if retry else {NOT_LAUNCHED, INCOMPLETE}
    todo = [s.cell for s in statuses if s.state in wanted]
    if only:
        picked = [c for c in todo if any(fnmatch.fnmatchcase(c.name, p) for p in only)]
        if len(picked) < len(todo):
            log(f"grid {grid.name}: --only leaves out {len(todo) - len(picked)} of the "
                f"{len(todo)} cells to run")
        todo = picked
    counts = state_counts(statuses)
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    if not todo:
        hint = "" if retry or not counts.get(FAILED_STATE) else " (failed cells: use `grid retry`)"
        log(f"grid {grid.name}: nothing to submit, all {len(cells)} cells already launched "
            f"({summary}){hint}")
        return []
    data_dir = data_dir or grid.data_dir
    for source in {(c.cfg["backbone"], c.cfg["dataset"]): c.cfg for c in todo}.values():
        try:  # offline, an unknown backbone fails here, not in every submitted cell
            check_sources(source, data_dir)
        except (UnknownNameError, ValueError) as exc:
            if not dry_run:
                raise
            log(f"warning: {exc}")
    threads = (slurm_parameters(grid, flags).get("cpus_per_task") or 1) \
        if executor == "slurm" else 1  # one single-thread worker per core locally
    runs = [(c, {**c.cfg, "threads": c.cfg.get("threads") or threads}) for c in todo]
    if executor != "slurm" and not allow_mixed_precision:
        try:
            check_precision(grid.name, statuses, [cfg for _, cfg in runs])
        except ConfigError as exc:
            if not dry_run:
                raise
            log(f"warning: {exc}")
    verb = "retry" if retry else "submit"
    log(f"grid {grid.name}: {verb} {len(todo)} of {len(cells)} cells via {executor} ({summary})")
    if dry_run:
        if executor == "slurm":
            log("  sbatch parameters: " + ", ".join(
                f"{k}={v}" for k, v in sorted(slurm_parameters(grid, flags).items())))
        for c, _ in runs:
            log(f"  would {verb} {c.name}  -> {c.path}")
        return todo
    for c, _ in runs:  # a relaunched cell's old error stays beside it, out of the status' way
        if (c.path / FAILED).exists():
            (c.path / FAILED).replace(c.path / (FAILED + ".prev"))
    folder = out / "_submitit" / grid.name
    if executor == "slurm":
        _launch_slurm(grid, runs, out, folder, flags, data_dir, log)
        if wait:
            wait_for(cells, poll_s, log)
    elif executor == "local":
        _launch_local(runs, out, data_dir, workers or grid.local.get("workers"), log)
    else:
        _launch_debug(runs, out, folder, data_dir, log)
    return todo


def check_precision(name: str, statuses: list[CellStatus], todo: list[dict],
                    device=None) -> None:
    """Refuse to run the configs ``todo`` on this machine at another precision than the grid's
    finished cells of the same ``amp`` setting used (``amp: auto`` is bf16 on CUDA and on CPUs
    with native bf16, fp32 elsewhere): paired comparisons across the two would mix precisions.

    Only the local and debug executors run cells where they launch; a SLURM node's CPU is
    known when the cell starts, so there a resumed run checks itself (``Run``) and the
    analysis reports a mix (``analysis.load``)."""
    here = {cfg["amp"]: precision(device_info(device, cfg)["bf16_autocast"]) for cfg in todo}
    finished: dict[str, int] = {}
    for s in statuses:
        amp = s.cell.cfg["amp"]
        was = recorded_precision(read_json(s.cell.path / META)) \
            if s.state == DONE_STATE and amp in here else None
        if was not in (None, here[amp]):
            finished[was] = finished.get(was, 0) + 1
    if finished:
        ran = " and ".join(f"{n} in {p}" for p, n in sorted(finished.items()))
        raise ConfigError(
            f"grid {name}: finished cells ran {ran}, but this machine "
            f"({describe(device_info(device, todo[0]))}) would run the {len(todo)} left in "
            f"{'/'.join(sorted(set(here.values())))}; launch them where the finished cells "
            f"ran (each meta.json names its device), pin amp=auto here with {AMP_AUTO_ENV}="
            f"{'|'.join(p for p in sorted(finished) if p != 'mixed')} (bf16 on a CPU without "
            "it runs its matmuls on fp32 units, at about 1.2x the fp32 time), or pass "
            "--allow-mixed-precision to mix precisions knowingly (the analysis then notes the mix)")


def _job_record(executor: str, job_id: str | None, folder: Path | None) -> dict:
    return {"executor": executor, "job_id": job_id, "folder": str(folder) if folder else None,
            "submitted": time.time(), "host": socket.gethostname(), "pid": os.getpid()}


def slurm_executor(grid: Grid, folder: str | Path, flags: dict | None = None):
    """A submitit SLURM executor with the grid's parameters (submitit validates every one)."""
    params = slurm_parameters(grid, flags)
    # requeues after a time-out: an executor argument, not an sbatch parameter
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm",
                               slurm_max_num_timeout=params.pop("slurm_max_num_timeout", 3))
    ex.update_parameters(**params)
    return ex


def _launch_slurm(grid, runs, out, folder, flags, data_dir, log) -> None:
    ex = slurm_executor(grid, folder, flags)
    jobs = []
    with ex.batch():  # one job array
        for _, cfg in runs:
            jobs.append(ex.submit(CellJob(cfg, str(out), data_dir)))
    for (cell, _), job in zip(runs, jobs):
        cell.path.mkdir(parents=True, exist_ok=True)
        write_json(cell.path / JOB_FILE, _job_record("slurm", job.job_id, folder))
    log(f"submitted job array {jobs[0].job_id.split('_')[0]} ({len(jobs)} tasks); "
        f"logs in {folder}")


def _launch_local(runs, out, data_dir, workers, log) -> None:
    from joblib import Parallel, delayed

    workers = int(workers or os.cpu_count() or 1)
    for cell, _ in runs:
        cell.path.mkdir(parents=True, exist_ok=True)
        write_json(cell.path / JOB_FILE, _job_record("local", None, None))
    errors = Parallel(n_jobs=min(workers, len(runs)), backend="loky")(
        delayed(_run_cell_local)(cfg, str(out), data_dir, os.getpid()) for _, cfg in runs)
    for (cell, _), err in zip(runs, errors):
        log(f"  {cell.name}: " + (f"failed ({err})" if err else "done"))


def _launch_debug(runs, out, folder, data_dir, log) -> None:
    """In this process, one cell after the other (submitit's debug executor: pdb on errors)."""
    ex = submitit.AutoExecutor(folder=folder, cluster="debug")
    for cell, cfg in runs:
        cell.path.mkdir(parents=True, exist_ok=True)
        write_json(cell.path / JOB_FILE, _job_record("debug", None, None))
        job = ex.submit(CellJob(cfg, str(out), data_dir))
        try:
            job.result()
            log(f"  {cell.name}: done")
        except Exception as exc:
            log(f"  {cell.name}: failed ({type(exc).__name__}: {exc})")


def wait_for(cells: list[Cell], poll_s: float = 5.0, log=print,
             timeout_s: float | None = None) -> list[CellStatus]:
    """Poll the disk (and the scheduler) until no cell is queued or running; return the last
    status."""
    start = time.time()
    while True:
        statuses = grid_status(cells)
        if not any(s.state in ACTIVE for s in statuses):
            return statuses
        if timeout_s is not None and time.time() - start > timeout_s:
            raise TimeoutError(f"cells still running after {timeout_s:.0f}s:\n"
                               + format_status(statuses))
        time.sleep(poll_s)


