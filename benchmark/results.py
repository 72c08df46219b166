"""Run folders on disk: config, environment, round records, checkpoint and a ``done`` marker.

A run folder is named by its config hash, so a re-run never mixes two configs. Records are one
JSON line per round, appended with a single ``write`` + fsync; a line cut by a crash is dropped
when read and cut away before the next append, so no half line is ever read back.

One writer per folder: a run holds an exclusive ``flock`` on ``lock`` for its whole life. The
kernel drops the lock when its process dies, however it dies, so a dead run's lock is simply
taken over; the file says who holds it (pid, host) for the error a second writer gets.

Results folders are shared (a cluster's scratch, a study's tarball), so nothing read from one
may run code: the checkpoint holds only tensors and plain containers (numpy arrays travel as
tagged tensors) and is read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import platform
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import config_hash, run_name
from .device import device_info, recorded_precision

RECORDS, CONFIG, META, CHECKPOINT, DONE, FAILED, LOCK = (
    "records.jsonl", "config.json", "meta.json", "checkpoint.pt", "done", "failed", "lock")
BALLAST = 64 * 1024  # bytes the lock file reserves, so a full disk still takes ``failed``
NDARRAY = "__ndarray__"  # tag of a numpy array stored as a tensor in the checkpoint


class ConfigMismatch(RuntimeError):
    pass


class RunError(RuntimeError):
    """A run that cannot go on for a reason outside it; the message is the whole story."""


class RunBusy(RunError):
    """Another live process holds the run folder's lock."""


class RunIOError(RunError):
    """The run folder cannot be written (read-only, disk full, ...)."""


def io_error(exc: OSError, doing: str) -> RunIOError:
    where = f" {exc.filename}" if exc.filename else ""
    return RunIOError(f"cannot {doing}{where}: {exc.strerror or exc}")


def _fsync_replace(tmp: Path, path: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write(path: Path, write) -> None:
    """``write(tmp)``, fsync, rename over ``path``; a failed write leaves no temporary file."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        write(tmp)
        _fsync_replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    text = json.dumps(obj, indent=1, sort_keys=True, default=str)
    _atomic_write(path, lambda tmp: tmp.write_text(text))


def read_json(path: Path):
    """The JSON in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def to_plain(obj):
    """Checkpoint state -> what ``torch.load(weights_only=True)`` reads: numpy arrays become
    tagged tensors, numpy scalars Python numbers; anything else must already be plain."""
    if isinstance(obj, np.ndarray):
        return {NDARRAY: torch.from_numpy(np.ascontiguousarray(obj))}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {to_plain(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj


def from_plain(obj):
    """The inverse of :func:`to_plain`."""
    if isinstance(obj, dict):
        if len(obj) == 1 and NDARRAY in obj:
            return obj[NDARRAY].numpy()
        return {k: from_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(from_plain(v) for v in obj)
    return obj


def lock_holder(folder: str | Path) -> dict | None:
    """Who holds a run folder's lock (``{"pid", "host", ...}``), or None when no process does.

    Probing takes a shared lock for an instant; a run starting at that instant waits for it.
    """
    path = Path(folder) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return json.loads(os.pread(fd, 4096, 0).rstrip(b"\0") or b"{}")
            except ValueError:
                return {}
        except OSError:  # no locks on this file system
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def read_records(path: str | Path) -> tuple[list[dict], list[str]]:
    """Valid records and a list of problems (corrupt or cut lines), never raising on content."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORDS
    if not path.exists():
        return [], []
    data = path.read_bytes()
    records, problems = [], []
    lines = data.split(b"\n")
    if lines and lines[-1] != b"":
        problems.append(f"{path}: last line cut short ({len(lines[-1])} bytes), ignored")
    for number, line in enumerate(lines[:-1], 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
            records.append(rec)
        except ValueError as exc:
            problems.append(f"{path}:{number}: corrupt line skipped ({exc})")
    return records, problems


def environment(cfg: dict | None = None, device=None) -> dict:
    """Package versions, commit, host and the device the run computes on (``device_info``)."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("torch", "transformers", "datasets", "numpy", "scikit-learn", "submitit"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"versions": versions, "git_commit": commit, "python": platform.python_version(),
            "host": platform.node(), "cuda": torch.cuda.is_available(),
            "device": device_info(device, cfg),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S")}


def missing_rounds(records: list[dict], rounds: int) -> list[int]:
    """Rounds 0..rounds that no record holds."""
    have = {r.get("round") for r in records}
    return [t for t in range(int(rounds) + 1) if t not in have]


def duplicate_rounds(records: list[dict]) -> list[int]:
    """Rounds recorded more than once (two writers, or a resume that wrote a round again)."""
    seen, dup = set(), set()
    for r in records:
        (dup if r.get("round") in seen else seen).add(r.get("round"))
    return sorted(dup, key=str)


def round_problems(records: list[dict], rounds: int | None) -> list[str]:
    """Why records are not a whole run: rounds 0..``rounds`` lost (when known) or repeated."""
    out = []
    lost = missing_rounds(records, rounds) if rounds is not None else []
    if lost:
        out.append(f"round(s) {', '.join(map(str, lost))} missing")
    dup = duplicate_rounds(records)
    if dup:
        out.append(f"round(s) {', '.join(map(str, dup))} recorded more than once")
    return out


# What a run folder's marker files say; the grid's status and the analysis both read it here.
RUN_STATES = ("running", "done", "damaged", "failed", "incomplete", "not started")


@dataclass(frozen=True)
class FolderState:
    state: str          # one of RUN_STATES
    detail: str = ""    # running: who holds the lock; damaged: the rounds lost or repeated


def folder_state(folder: str | Path, rounds: int | None = None,
                 records: list[dict] | None = None) -> FolderState:
    """A run folder's state, from its markers in this order: ``running`` (a live process holds
    its lock, whatever else is there), ``done`` (marked done, every round 0..``rounds`` recorded
    once), ``damaged`` (marked done, a round lost or repeated), ``failed`` (raised; ``failed``
    holds the traceback), ``incomplete`` (a checkpoint or records: cut short), ``not started``.
    ``records``: the folder's, when the caller has read them already."""
    folder = Path(folder)
    holder = lock_holder(folder)
    if holder is not None:
        return FolderState("running", f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}")
    if records is None:
        records = read_records(folder)[0]
    if (folder / DONE).exists():
        problems = round_problems(records, rounds)
        return FolderState("damaged", "; ".join(problems)) if problems else FolderState("done")
    if (folder / FAILED).exists():
        return FolderState("failed")
    if (folder / CHECKPOINT).exists() or records:
        return FolderState("incomplete")
    return FolderState("not started")


def kept_records(folder: str | Path, records: list[dict]) -> list[dict]:
    """The records a launch keeps: a done run's, or a cut-short run's beside its checkpoint.
    Records without their checkpoint (a checkout carries the one, not the other) are
    recomputed from round 0 (:meth:`RunStore.resumable`)."""
    folder = Path(folder)
    return records if (folder / DONE).exists() or (folder / CHECKPOINT).exists() else []


class RunStore:
    def __init__(self, out: str | Path, cfg: dict, device=None):
        self.cfg, self.device = cfg, device
        self.hash = config_hash(cfg)
        self.path = Path(out) / run_name(cfg)
        self._lock_fd: int | None = None

    # the one-writer lock -------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, wait_s: float = 1.0):
        """Hold the folder's exclusive lock for the ``with`` block (created with the folder).

        A second writer raises :class:`RunBusy` within ``wait_s`` (the wait only rides out a
        status probe). After a kill the kernel has already dropped the dead run's lock.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = self._acquire(self.path / LOCK, wait_s)
        except OSError as exc:
            raise io_error(exc, "write to") from None
        self._lock_fd = fd
        try:
            yield self
        finally:
            self._lock_fd = None
            with contextlib.suppress(OSError):
                (self.path / LOCK).unlink()  # still ours: nobody can hold it in between
            os.close(fd)

    def _acquire(self, path: Path, wait_s: float) -> int:
        deadline = time.monotonic() + wait_s
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                who = lock_holder(self.path) or {}
                raise RunBusy(f"{self.path} is already running (pid {who.get('pid', '?')} on "
                              f"{who.get('host', '?')})") from None
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    os.close(fd)
                    raise
                print(f"warning: {path.parent} does not support file locks; nothing stops a "
                      "second run of this folder from writing at the same time")
            try:  # the last holder unlinks the file: make sure we locked the one on disk
                if os.fstat(fd).st_ino != os.stat(path).st_ino:
                    raise FileNotFoundError
            except FileNotFoundError:
                os.close(fd)
                continue
            me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode()
            try:
                os.pwrite(fd, me, 0)
                os.ftruncate(fd, len(me))
                with contextlib.suppress(OSError):  # best effort: room to write ``failed``
                    os.posix_fallocate(fd, 0, BALLAST)
            except OSError:
                os.close(fd)
                raise
            return fd

    def open(self) -> "RunStore":
        """Check that the folder holds this config (or none yet), write it, clear debris.

        Called under :meth:`lock`: any temporary file here was left by a dead writer.
        """
        cfg_file = self.path / CONFIG
        if cfg_file.exists():
            try:
                old = json.loads(cfg_file.read_text()).get("config_hash")
            except ValueError:
                old = None
            if old not in (None, self.hash):
                raise ConfigMismatch(f"{self.path} holds config {old}, not {self.hash}")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            for tmp in self.path.glob("*.tmp*"):
                tmp.unlink(missing_ok=True)
            write_json(cfg_file, {"config_hash": self.hash, "config": self.cfg})
        except OSError as exc:
            raise io_error(exc, "write") from None
        return self

    def record_start(self) -> None:
        """``meta.json``: the first start's environment, and one entry per resume after it. A
        start that starts over (no round recorded, or records without their checkpoint, as in a
        checkout that kept only the records) leaves no round of the earlier start: it replaces
        that start, so the meta names the machine every round ran on."""
        meta, env = read_json(self.path / META), environment(self.cfg, self.device)
        if isinstance(meta, dict) and meta.get("started") and self.resumable:
            meta.setdefault("resumes", []).append(env)
        else:
            meta = env
        write_json(self.path / META, meta)

    # records ------------------------------------------------------------------------------
    @property
    def records_path(self) -> Path:
        return self.path / RECORDS

    def records(self) -> list[dict]:
        return read_records(self.records_path)[0]

    def append(self, record: dict) -> None:
        line = (json.dumps(record, sort_keys=True, default=float) + "\n").encode()
        self._cut_partial_tail()
        fd = os.open(self.records_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def rewrite(self, records: list[dict]) -> None:
        text = "".join(json.dumps(r, sort_keys=True, default=float) + "\n" for r in records)
        _atomic_write(self.records_path, lambda tmp: tmp.write_text(text))

    def _cut_partial_tail(self) -> None:
        p = self.records_path
        if not p.exists() or p.stat().st_size == 0:
            return
        with open(p, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
            data = f.seek(0) or f.read()
            f.truncate(data.rfind(b"\n") + 1)

    # checkpoint and markers ---------------------------------------------------------------
    def save_checkpoint(self, state: dict) -> None:
        plain = to_plain(state)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # through Python, a full disk is an OSError, not a
                torch.save(plain, f)    # RuntimeError from torch's own file writer
        _atomic_write(self.path / CHECKPOINT, write)

    def load_checkpoint(self) -> dict | None:
        p = self.path / CHECKPOINT
        if not p.exists():
            return None
        try:
            return from_plain(torch.load(p, weights_only=True))
        except Exception as exc:  # corrupt, or not plain data: never unpickled, run restarts
            p.rename(p.with_suffix(".corrupt"))
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(f"warning: {p} unreadable as plain data ({why}); moved aside, "
                  "restarting the run")
            return None

    @property
    def done(self) -> bool:
        return (self.path / DONE).exists()

    @property
    def resumable(self) -> bool:
        """A checkpoint and a recorded round: the next start continues after them, where
        without either it starts over from round 0 (and rewrites the records)."""
        return (self.path / CHECKPOINT).exists() and bool(self.records())

    def resumed_precision(self) -> str | None:
        """The precision (``bf16``/``fp32``/``mixed``) of the rounds a resume would continue
        from; None when it would start over."""
        if not self.resumable:
            return None
        return recorded_precision(read_json(self.path / META))

    def problems(self) -> list[str]:
        """Why a folder marked done is not a whole run: lost or repeated rounds."""
        return round_problems(self.records(), self.cfg["rounds"])

    @property
    def complete(self) -> bool:
        """Done, and the records hold every round exactly once."""
        return self.done and not self.problems()

    def mark_done(self) -> None:
        (self.path / FAILED).unlink(missing_ok=True)
        (self.path / CHECKPOINT).unlink(missing_ok=True)  # the records are the result
        (self.path / DONE).write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))

    def unmark_done(self) -> None:
        (self.path / DONE).unlink(missing_ok=True)

    def clear_failed(self) -> None:
        """A new attempt: keep the last traceback as ``failed.prev``."""
        if (self.path / FAILED).exists():
            (self.path / FAILED).replace(self.path / (FAILED + ".prev"))

    def mark_failed(self, error: str) -> None:
        """Write the reason, whatever the disk: temporary files go first, and on a full disk
        the lock file gives back the room it reserved."""
        for tmp in self.path.glob(f"*.tmp{os.getpid()}"):
            tmp.unlink(missing_ok=True)
        for attempt in range(2):
            try:
                _atomic_write(self.path / FAILED, lambda tmp: tmp.write_text(error))
                return
            except OSError:
                if attempt or self._lock_fd is None:
                    raise
                held = os.pread(self._lock_fd, 4096, 0).rstrip(b"\0")
                os.ftruncate(self._lock_fd, len(held))
