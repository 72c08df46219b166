"""Grids of runs (methods x datasets x seeds x settings x override sweeps) on SLURM or locally.

A grid file (YAML) names the axes; every combination is a *cell*, whose identity is the hash of
its resolved config, so its run folder (``RunStore(out, cfg).path``) is the same on every
launch. Everything a grid knows about its cells is read from disk, never from
``job.result()`` (one failed task of a job array breaks that path):

- the run folder: ``done`` marker, ``failed`` (traceback), ``records.jsonl`` + ``checkpoint.pt``
  (written by ``benchmark.loop.Run`` after every round);
- ``grid_job.json`` in the run folder, written here at submission (executor, job id, submitit
  folder), and ``attempt.json``, written by the cell when it starts (host, pid, job id);
- the run folder's ``lock``, held by the process running the cell (wherever it runs);
- for SLURM the scheduler's job state (``sacct``, ``squeue`` as a fall-back), and the tail of
  the job's stderr log for a job that raised outside the run loop. Submitit's pickled result
  files are never read: a results folder is shared, and unpickling runs code.

A cell runs as :class:`CellJob`, a submitit ``Checkpointable``: on a time-out or preemption
submitit requeues it, and ``Run`` resumes from the last finished round, so the final records
equal an uninterrupted run's.
"""
from __future__ import annotations

import io
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

import submitit
import yaml

from .config import ConfigError, check_sources, load_yaml, parse_overrides, resolve
from .registry import UnknownNameError
from .results import (CHECKPOINT, DONE, FAILED, RECORDS, RunBusy, RunStore, lock_holder,
                      read_records, write_json)
from .settings import SETTINGS

JOB_FILE, ATTEMPT_FILE = "grid_job.json", "attempt.json"
NOT_LAUNCHED, RUNNING, INCOMPLETE, DONE_STATE, FAILED_STATE = (
    "not launched", "running", "incomplete", "done", "failed")
# sacct/squeue states of a job that may still finish on its own.
ACTIVE_SLURM = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING",
                "CONFIGURING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "SIGNALING"}
GRACE_S = 120  # a job SLURM does not know yet, this soon after submission, counts as queued

# Grid-file keys of the ``slurm:`` section -> submitit AutoExecutor parameters.
SLURM_KEYS = {"partition": "slurm_partition", "time": "timeout_min", "mem_gb": "mem_gb",
              "cpus_per_task": "cpus_per_task", "gpus_per_node": "gpus_per_node",
              "gres": "slurm_gres", "account": "slurm_account", "qos": "slurm_qos",
              "constraint": "slurm_constraint", "array_parallelism": "slurm_array_parallelism",
              "max_num_timeout": "slurm_max_num_timeout", "signal_delay_s": "slurm_signal_delay_s",
              "setup": "slurm_setup", "additional": "slurm_additional_parameters",
              "job_name": "name"}
GRID_KEYS = {"name", "preset", "methods", "datasets", "seeds", "settings", "overrides", "sweep",
             "include", "blocks", "data_dir", "slurm", "local"}
BLOCK_KEYS = {"methods", "datasets", "seeds", "settings", "overrides", "sweep"}
LOCAL_KEYS = {"workers"}


# ------------------------------------------------------------------------------------------------
# grid spec and expansion
@dataclass
class Grid:
    """Axes of a study; :meth:`cells` is their product (plus ``include``), each cell resolved."""
    name: str
    methods: list = field(default_factory=list)
    datasets: list = field(default_factory=list)
    seeds: list = field(default_factory=lambda: [0])
    settings: list = field(default_factory=lambda: ["al"])
    preset: str = "cpu"
    overrides: dict = field(default_factory=dict)   # --set for every cell
    sweep: dict = field(default_factory=dict)       # key -> list of values, crossed
    include: list = field(default_factory=list)     # extra cells: {method, dataset, seed, ...}
    blocks: list = field(default_factory=list)      # sub-grids overriding the axes above
    data_dir: str | None = None
    slurm: dict = field(default_factory=dict)       # executor parameters (SLURM_KEYS)
    local: dict = field(default_factory=dict)       # {workers: N}

    @classmethod
    def load(cls, path: str | Path) -> "Grid":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"grid file {str(path)!r} does not exist")
        try:
            spec = load_yaml(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})"
                              ) from None
        if not isinstance(spec, dict):
            raise ValueError(f"{path}: a grid file is a mapping (methods:, datasets:, ...)")
        unknown = set(spec) - GRID_KEYS
        if unknown:
            raise ValueError(f"{path}: unknown grid key(s) {sorted(unknown)}; "
                             f"known: {sorted(GRID_KEYS)}")
        for block in spec.get("blocks") or []:
            bad = set(block) - BLOCK_KEYS
            if bad:
                raise ValueError(f"{path}: unknown block key(s) {sorted(bad)}; "
                                 f"known: {sorted(BLOCK_KEYS)}")
        for key in ("methods", "datasets"):
            if not spec.get(key) and not all(b.get(key) for b in spec.get("blocks") or [{}]):
                raise ValueError(f"{path}: the grid names no {key}")
        spec.setdefault("name", path.stem)
        for key in ("methods", "datasets", "seeds", "settings"):
            if key in spec and not isinstance(spec[key], list):
                spec[key] = [spec[key]]
        for block in [spec] + list(spec.get("blocks") or []):
            settings = block.get("settings") or []
            for setting in settings if isinstance(settings, list) else [settings]:
                if setting not in SETTINGS:  # `settings: [all]` would expand to no cell
                    raise UnknownNameError(f"{path}: {SETTINGS.unknown_message(setting)}")
        for section, known in (("slurm", SLURM_KEYS), ("local", LOCAL_KEYS)):
            if not isinstance(spec.get(section) or {}, dict):
                raise ValueError(f"{path}: {section}: is a mapping of {sorted(known)}")
            bad = [k for k in (spec.get(section) or {}) if k not in known]
            if bad:
                raise ValueError(f"{path}: unknown {section} key(s) {bad}; known: {sorted(known)}")
        workers = (spec.get("local") or {}).get("workers")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                    or workers < 1):
            raise ConfigError(f"{path}: local: workers must be an integer >= 1, got {workers!r}")
        return cls(**{k: v for k, v in spec.items() if v is not None})

    def with_overrides(self, overrides: dict) -> "Grid":
        """The same grid with extra ``--set`` values for every cell (command line, tests)."""
        return replace(self, overrides={**self.overrides, **overrides})

    def cells(self, out: str | Path) -> list["Cell"]:
        """Resolve every combination (an unknown name or key fails here, before submission).

        Combinations a method cannot run (a setting it does not support) are left out; the same
        resolved config reached twice is one cell.
        """
        from methods import get_method

        specs = []
        for block in self.blocks or [{}]:
            axes = {k: block.get(k, getattr(self, k)) for k in BLOCK_KEYS}
            keys = list(axes["sweep"])
            combos = [dict(zip(keys, vals)) for vals in itertools.product(
                *[v if isinstance(v, list) else [v] for v in axes["sweep"].values()])]
            specs += [dict(method=m, dataset=d, seed=s, setting=st,
                           overrides={**self.overrides, **axes["overrides"], **c})
                      for m, d, st, s, c in itertools.product(
                          axes["methods"], axes["datasets"], axes["settings"], axes["seeds"],
                          combos)
                      if st in get_method(m).settings]
        # seed-major: every method's first seed runs before any second seed, so a grid cut short
        # still has complete comparisons; the order within a seed follows the file
        first = {}
        for spec in specs:
            first.setdefault(spec["dataset"], len(first))
        specs.sort(key=lambda spec: (spec["seed"], first[spec["dataset"]]))
        for extra in self.include:
            extra = dict(extra)
            specs.append(dict(method=extra.pop("method"), dataset=extra.pop("dataset"),
                              seed=extra.pop("seed", 0), setting=extra.pop("setting", "al"),
                              overrides={**self.overrides, **extra.pop("overrides", {}), **extra}))
        cells, seen = [], set()
        for s in specs:
            cfg = resolve(s["method"], s["dataset"], s["seed"], s["setting"], self.preset,
                          s["overrides"])
            cell = Cell(cfg, RunStore(out, cfg).path)
            if cell.path not in seen:
                seen.add(cell.path)
                cells.append(cell)
        if not cells:
            raise ConfigError(f"grid {self.name!r} has no cells: none of its methods runs in "
                              f"its settings ({', '.join(map(str, self.settings))})")
        return cells


@dataclass(frozen=True)
class Cell:
    cfg: dict
    path: Path

    @property
    def name(self) -> str:
        return self.path.name


# ------------------------------------------------------------------------------------------------
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
        from .loop import Run

        # a cell logs its round lines, never a bar: parallel workers share one terminal
        run = Run(self.cfg, self.out, self.data_dir, self.device,
                  log=lambda line: print(f"{run.store.path.name}: {line}", flush=True),
                  stream=io.StringIO())
        run.store.path.mkdir(parents=True, exist_ok=True)
        write_json(run.store.path / ATTEMPT_FILE, {
            "host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
            "job_id": _current_job_id()})
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
        while (os.getppid() == parent) if parent == launcher else _pid_alive(launcher):
            time.sleep(poll_s)
        print(f"worker {os.getpid()}: launcher {launcher} is gone; stopping", flush=True)
        os._exit(1)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


# ------------------------------------------------------------------------------------------------
# status from disk
@dataclass
class CellStatus:
    cell: Cell
    state: str
    rounds: int              # finished rounds on disk (records)
    total: int               # rounds + 1 (round 0 included)
    detail: str = ""
    error: str = ""          # traceback, for failed cells

    def error_tail(self, lines: int = 3) -> str:
        return "\n".join(self.error.strip().splitlines()[-lines:])


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:  # os.kill(0 or -1) would address a whole group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (an orphan whose reaper does not reap, as in some containers) has ended
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """``{job id: state}`` from sacct (array ranges expanded), then squeue for any it lacks."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    ids = sorted({j.split("_")[0] for j in job_ids})
    states: dict[str, str] = {}
    if not ids:
        return states
    try:
        out = subprocess.run(["sacct", "-X", "-P", "-o", "JobID,State", "-j", ",".join(ids)],
                             capture_output=True, text=True, timeout=30).stdout
        states = {k: v["State"].split()[0] for k, v in SlurmInfoWatcher().read_info(out).items()}
    except (OSError, subprocess.SubprocessError):
        pass
    if any(j not in states for j in job_ids):
        try:
            out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(ids)],
                                 capture_output=True, text=True, timeout=30).stdout
            for line in out.splitlines():
                jid, _, state = line.partition("|")
                states.setdefault(jid.strip(), state.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    return states


def _job_log_tail(job: dict, lines: int = 20) -> str:
    """The end of a SLURM task's stderr log (plain text; submitit's result pickle is never
    read: unpickling a file from a shared results folder would run whatever it holds)."""
    from submitit.core.utils import JobPaths

    if not job.get("folder") or not job.get("job_id"):
        return ""
    try:
        text = JobPaths(job["folder"], job_id=job["job_id"], task_id=0).stderr.read_text(
            errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def cell_status(cell: Cell, scheduler: dict[str, str] | None = None) -> CellStatus:
    p, total = cell.path, cell.cfg["rounds"] + 1
    records = read_records(p / RECORDS)[0]
    rounds = len({r.get("round") for r in records})
    st = lambda state, detail="", error="": CellStatus(cell, state, rounds, total, detail, error)
    holder = lock_holder(p)
    if holder is not None:  # a live process holds the run: running, whatever else disk says
        return st(RUNNING, f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}")
    if (p / DONE).exists():
        problems = RunStore(p.parent, cell.cfg).problems()
        if not problems:
            return st(DONE_STATE)
        return st(INCOMPLETE, f"damaged ({'; '.join(problems)}): launching again recomputes it")
    if (p / FAILED).exists():
        return st(FAILED_STATE, "raised", (p / FAILED).read_text(errors="replace"))
    job = _read_json(p / JOB_FILE)
    started = (p / CHECKPOINT).exists() or rounds > 0
    if job is None:
        return st(INCOMPLETE, "started outside a grid, not finished") if started else \
            st(NOT_LAUNCHED)
    age = time.time() - job.get("submitted", 0)
    if job["executor"] == "slurm":
        state = (scheduler or {}).get(job["job_id"])
        if state is None:
            return st(RUNNING, f"job {job['job_id']} submitted, no state yet") if age < GRACE_S \
                else st(INCOMPLETE, f"job {job['job_id']} unknown to SLURM")
        if state in ACTIVE_SLURM:
            return st(RUNNING, f"job {job['job_id']} {state}")
        if state == "FAILED":  # the task raised outside the run loop (e.g. too many time-outs)
            return st(FAILED_STATE, f"job {job['job_id']} raised", _job_log_tail(job))
        return st(INCOMPLETE, f"job {job['job_id']} ended {state} before the last round")
    # local / debug: a process on this host (the cell's own, or its launcher before it starts)
    attempt = _read_json(p / ATTEMPT_FILE)
    if attempt and attempt.get("started", 0) >= job.get("submitted", 0):
        if attempt.get("host") == socket.gethostname() and _pid_alive(attempt["pid"]):
            return st(RUNNING, f"pid {attempt['pid']}")
        return st(INCOMPLETE, f"process {attempt.get('pid')} on {attempt.get('host')} is gone")
    if job.get("host") == socket.gethostname() and _pid_alive(job.get("pid", -1)):
        return st(RUNNING, "queued in a local launcher")
    return st(INCOMPLETE, "its launcher stopped before it started")


def grid_status(cells: list[Cell]) -> list[CellStatus]:
    jobs = [_read_json(c.path / JOB_FILE) for c in cells]
    slurm_ids = [j["job_id"] for j in jobs if j and j.get("executor") == "slurm"]
    scheduler = slurm_states(slurm_ids) if slurm_ids else {}
    return [cell_status(c, scheduler) for c in cells]


def format_status(statuses: list[CellStatus], error_lines: int = 3) -> str:
    width = max([len(s.cell.name) for s in statuses] + [4])
    lines = [f"{'cell':{width}s}  {'state':12s}  rounds  detail"]
    for s in statuses:
        lines.append(f"{s.cell.name:{width}s}  {s.state:12s}  {s.rounds:>2d}/{s.total:<3d}  "
                     f"{s.detail}")
        if s.state == FAILED_STATE and s.error:
            lines += ["    | " + line for line in s.error_tail(error_lines).splitlines()]
    counts = {}
    for s in statuses:
        counts[s.state] = counts.get(s.state, 0) + 1
    lines.append(", ".join(f"{n} {state}" for state, n in counts.items()) or "no cells")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# launch / retry
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
           log=print) -> list[Cell]:
    """Submit the grid's not-launched and incomplete cells (``retry``: failed and incomplete).

    An incomplete cell (its job or process ended before the last round) resumes from its
    checkpoint, so launching a grid again picks up whatever is missing; a failed cell raised
    and waits for an explicit ``retry``. Done and running cells are never submitted again.
    Returns the cells submitted.
    """
    if executor not in ("slurm", "local", "debug"):
        raise ValueError(f"unknown executor {executor!r} (slurm, local or debug)")
    out = Path(out)
    cells = grid.cells(out)
    statuses = grid_status(cells)
    wanted = {FAILED_STATE, INCOMPLETE} if retry else {NOT_LAUNCHED, INCOMPLETE}
    todo = [s.cell for s in statuses if s.state in wanted]
    counts = {}
    for s in statuses:
        counts[s.state] = counts.get(s.state, 0) + 1
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
    """Poll the disk (and the scheduler) until no cell is running; return the last status."""
    start = time.time()
    while True:
        statuses = grid_status(cells)
        if not any(s.state == RUNNING for s in statuses):
            return statuses
        if timeout_s is not None and time.time() - start > timeout_s:
            raise TimeoutError(f"cells still running after {timeout_s:.0f}s:\n"
                               + format_status(statuses))
        time.sleep(poll_s)


# ------------------------------------------------------------------------------------------------
# command line: python -m benchmark grid launch|status|retry GRID --out DIR
def add_arguments(p) -> None:
    subs = p.add_subparsers(dest="grid_command", required=True)
    for name, help in (("launch", "submit the grid's cells that were never launched"),
                       ("retry", "relaunch the grid's failed and incomplete cells only"),
                       ("status", "per cell: not launched, running, incomplete, done, failed")):
        q = subs.add_parser(name, help=help)
        q.add_argument("grid", help="grid file (YAML), e.g. grids/smoke.yaml")
        q.add_argument("--out", default="runs", help="results folder (run folders go here)")
        q.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="override for every cell (as in `run --set`)")
        q.add_argument("--data-dir", default=None)
        if name == "status":
            q.add_argument("--lines", type=int, default=3, help="traceback lines per failed cell")
            continue
        q.add_argument("--executor", default="slurm", choices=("slurm", "local", "debug"))
        q.add_argument("--wait", action="store_true", help="return when no cell is running")
        q.add_argument("--dry-run", action="store_true", help="print what would be submitted")
        q.add_argument("--workers", type=int, default=None, help="local: parallel workers")
        q.add_argument("--partition")
        q.add_argument("--time", type=int, help="minutes per cell (SLURM time limit)")
        q.add_argument("--mem-gb", type=float, dest="mem_gb")
        q.add_argument("--cpus", type=int, dest="cpus_per_task")
        q.add_argument("--gres", help="e.g. gpu:1")
        q.add_argument("--account")
        q.add_argument("--qos")
        q.add_argument("--array-parallelism", type=int, dest="array_parallelism")
        q.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                       help="extra sbatch parameter, e.g. --sbatch exclude=node7")


def main(args) -> int:
    grid = Grid.load(args.grid).with_overrides(parse_overrides(args.overrides))
    if args.grid_command == "status":
        print(format_status(grid_status(grid.cells(args.out)), args.lines))
        return 0
    flags = {k: getattr(args, k) for k in ("partition", "time", "mem_gb", "cpus_per_task",
                                           "gres", "account", "qos", "array_parallelism")}
    if args.sbatch:
        flags["additional"] = {**grid.slurm.get("additional", {}), **parse_overrides(args.sbatch)}
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    launch(grid, args.out, args.executor, retry=args.grid_command == "retry", wait=args.wait,
           dry_run=args.dry_run, flags=flags, workers=args.workers, data_dir=args.data_dir)
    if (args.wait or args.executor != "slurm") and not args.dry_run:
        statuses = grid_status(grid.cells(args.out))
        print(format_status(statuses))
        failed = [s for s in statuses if s.state == FAILED_STATE]
        if failed:
            print(f"error: grid {grid.name}: {len(failed)} of {len(statuses)} cells failed "
                  f"(tracebacks above; `grid retry` runs them again)", file=sys.stderr)
            return 2
    return 0
