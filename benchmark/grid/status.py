"""A cell's state, read from disk (and the scheduler), never from ``job.result()``.

The run folder's markers (``benchmark.results.folder_state``: its lock, ``done``, ``failed``,
records and checkpoint), ``grid_job.json`` written at submission (executor, job id, submitit
folder) and ``attempt.json`` written by the cell when it starts (host, pid, job id); for SLURM
the job state (``sacct``, ``squeue`` as a fall-back) and the tail of the job's stderr log for a
job that raised outside the run loop. Submitit's pickled result files are never read: a
results folder is shared, and unpickling runs code.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..results import FAILED, RECORDS, folder_state, kept_records, read_json, read_records
from .spec import Cell

JOB_FILE, ATTEMPT_FILE = "grid_job.json", "attempt.json"
NOT_LAUNCHED, QUEUED, RUNNING, INCOMPLETE, DONE_STATE, FAILED_STATE = (
    "not launched", "queued", "running", "incomplete", "done", "failed")
ACTIVE = (QUEUED, RUNNING)  # will go on without a new launch
# sacct/squeue states of a job that may still finish on its own.
ACTIVE_SLURM = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING",
                "CONFIGURING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "SIGNALING"}
GRACE_S = 120  # a job SLURM does not know yet, this soon after submission, counts as queued


@dataclass
class CellStatus:
    cell: Cell
    state: str
    rounds: int              # finished rounds on disk (records)
    total: int               # rounds + 1 (round 0 included)
    detail: str = ""
    error: str = ""          # traceback, for failed cells
    round_seconds: dict[int, float] = field(default_factory=dict)  # wall seconds, by round

    @property
    def seconds(self) -> float:
        """Wall seconds of its recorded rounds."""
        return sum(self.round_seconds.values())

    def error_tail(self, lines: int = 3) -> str:
        return "\n".join(self.error.strip().splitlines()[-lines:])


def pid_alive(pid) -> bool:
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
    kept = kept_records(p, records)           # the rounds a launch will not recompute
    rounds = len({r.get("round") for r in kept})
    by_round: dict[int, float] = {}
    for r in kept:
        if isinstance(r.get("round"), int):
            by_round[r["round"]] = by_round.get(r["round"], 0.0) + float(
                (r.get("time") or {}).get("round") or 0.0)
    st = lambda state, detail="", error="": CellStatus(cell, state, rounds, total, detail, error,
                                                       by_round)
    folder = folder_state(p, cell.cfg["rounds"], records)
    if folder.state == "running":  # a live process holds the run, whatever else disk says
        return st(RUNNING, folder.detail)
    if folder.state == "done":
        return st(DONE_STATE)
    if folder.state == "damaged":
        return st(INCOMPLETE, f"damaged ({folder.detail}): launching again recomputes it")
    if folder.state == "failed":
        return st(FAILED_STATE, "raised", (p / FAILED).read_text(errors="replace"))
    job = read_json(p / JOB_FILE)
    if job is None:
        return st(INCOMPLETE, "started outside a grid, not finished") \
            if folder.state == "incomplete" else st(NOT_LAUNCHED)
    age = time.time() - job.get("submitted", 0)
    if job["executor"] == "slurm":
        state = (scheduler or {}).get(job["job_id"])
        if state is None:
            return st(QUEUED, f"job {job['job_id']} submitted, no state yet") if age < GRACE_S \
                else st(INCOMPLETE, f"job {job['job_id']} unknown to SLURM")
        if state == "PENDING":
            return st(QUEUED, f"job {job['job_id']} PENDING")
        if state in ACTIVE_SLURM:
            return st(RUNNING, f"job {job['job_id']} {state}")
        if state == "FAILED":  # the task raised outside the run loop (e.g. too many time-outs)
            return st(FAILED_STATE, f"job {job['job_id']} raised", _job_log_tail(job))
        return st(INCOMPLETE, f"job {job['job_id']} ended {state} before the last round")
    # local / debug: a process on this host (the cell's own, or its launcher before it starts)
    attempt = read_json(p / ATTEMPT_FILE)
    if attempt and attempt.get("started", 0) >= job.get("submitted", 0):
        if attempt.get("host") == socket.gethostname() and pid_alive(attempt["pid"]):
            return st(RUNNING, f"pid {attempt['pid']}")
        return st(INCOMPLETE, f"process {attempt.get('pid')} on {attempt.get('host')} is gone")
    if job.get("host") == socket.gethostname() and pid_alive(job.get("pid", -1)):
        return st(QUEUED, "in a local launcher")
    return st(INCOMPLETE, "its launcher stopped before it started")


def grid_status(cells: list[Cell]) -> list[CellStatus]:
    jobs = [read_json(c.path / JOB_FILE) for c in cells]
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
    lines.append(", ".join(f"{n} {state}" for state, n in state_counts(statuses).items())
                 or "no cells")
    left = time_left(statuses)
    if left is not None and any(s.state != DONE_STATE for s in statuses):
        done_h, left_h, basis = left
        lines.append(f"finished cells: {done_h:.1f} worker-hours; left: about {left_h:.1f} "
                     f"worker-hours ({basis})")
    return "\n".join(lines)


def time_left(statuses: list[CellStatus]) -> tuple[float, float, str] | None:
    """(worker-hours of the finished cells, worker-hours the others still need, how it was
    estimated), or None before any cell has finished.

    A cell that is not done needs what the finished cells of its method, dataset and setting
    took (else of its dataset and setting, else of all), round by round, for the rounds it has
    not recorded. A study may move to another machine half-way (another CPU type: 4-5x slower
    seen), so that is scaled by the pace of the rounds it did record against the same rounds of
    those finished cells; a cell that recorded none takes the pace of the unfinished cells that
    did (1 if none has).
    """
    done = [s for s in statuses if s.state == DONE_STATE and s.seconds > 0]
    if not done:
        return None
    keys = (lambda c: (c.cfg["method"], c.cfg["dataset_name"], c.cfg["setting"]),
            lambda c: (c.cfg["dataset_name"], c.cfg["setting"]), lambda c: ())
    means = []  # per key level: {key: {round: mean seconds}}
    for key in keys:
        groups: dict[tuple, list[dict[int, float]]] = {}
        for s in done:
            groups.setdefault(key(s.cell), []).append(s.round_seconds)
        means.append({k: {r: sum(c.get(r, 0.0) for c in cells) / len(cells)
                          for r in set().union(*cells)} for k, cells in groups.items()})
    todo, used = [], [0, 0, 0]  # todo: (reference seconds still to run, (its own, reference))
    for s in statuses:
        if s.state == DONE_STATE:
            continue
        level = next(i for i, (key, m) in enumerate(zip(keys, means)) if key(s.cell) in m)
        used[level] += 1
        ref = means[level][keys[level](s.cell)]
        seen = sum(ref.get(r, 0.0) for r in s.round_seconds)
        todo.append((max(sum(ref.values()) - seen, 0.0),
                     (s.seconds, seen) if s.seconds > 0 and seen > 0 else None))
    paced = [own for _, own in todo if own]
    pace = sum(a for a, _ in paced) / sum(b for _, b in paced) if paced else 1.0
    left = sum(rest * (own[0] / own[1] if own else pace) for rest, own in todo)
    basis = ", ".join(f"{n} from {what}" for n, what in zip(
        used, ("finished cells of the same method, dataset and setting",
               "the same dataset and setting", "all finished cells")) if n)
    if paced and abs(pace - 1) >= 0.05:
        basis += (f"; x{pace:.2g}: the unfinished cells' recorded rounds took {pace:.2g}x as "
                  "long as the same rounds of those")
    return sum(s.seconds for s in done) / 3600, left / 3600, basis or "nothing left"


def state_counts(statuses: list[CellStatus]) -> dict[str, int]:
    """How many cells are in each state, in the order states first appear."""
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s.state] = counts.get(s.state, 0) + 1
    return counts

