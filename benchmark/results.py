"""Run folders on disk: config, environment, round records, checkpoint and a ``done`` marker.

A run folder is named by its config hash, so a re-run never mixes two configs. Records are one
JSON line per round, appended with a single ``write`` + fsync; a line cut by a crash is dropped
when read and cut away before the next append, so no half line is ever read back.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

from .config import config_hash, run_name
from .device import device_info

RECORDS, CONFIG, META, CHECKPOINT, DONE, FAILED = (
    "records.jsonl", "config.json", "meta.json", "checkpoint.pt", "done", "failed")


class ConfigMismatch(RuntimeError):
    pass


def _fsync_replace(tmp: Path, path: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str))
    _fsync_replace(tmp, path)


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


class RunStore:
    def __init__(self, out: str | Path, cfg: dict, device=None):
        self.cfg, self.device = cfg, device
        self.hash = config_hash(cfg)
        self.path = Path(out) / run_name(cfg)

    def open(self) -> "RunStore":
        """Create the folder, or check that an existing one holds the same config."""
        self.path.mkdir(parents=True, exist_ok=True)
        cfg_file = self.path / CONFIG
        if cfg_file.exists():
            try:
                old = json.loads(cfg_file.read_text()).get("config_hash")
            except ValueError:
                old = None
            if old not in (None, self.hash):
                raise ConfigMismatch(f"{self.path} holds config {old}, not {self.hash}")
        write_json(cfg_file, {"config_hash": self.hash, "config": self.cfg})
        write_json(self.path / META, environment(self.cfg, self.device))
        return self

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
        tmp = self.records_path.with_name(RECORDS + f".tmp{os.getpid()}")
        tmp.write_text("".join(json.dumps(r, sort_keys=True, default=float) + "\n" for r in records))
        _fsync_replace(tmp, self.records_path)

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
        tmp = self.path / (CHECKPOINT + f".tmp{os.getpid()}")
        torch.save(state, tmp)
        _fsync_replace(tmp, self.path / CHECKPOINT)

    def load_checkpoint(self) -> dict | None:
        p = self.path / CHECKPOINT
        if not p.exists():
            return None
        try:
            return torch.load(p, weights_only=False)
        except Exception as exc:  # a corrupt checkpoint: start the run again, keep the file
            p.rename(p.with_suffix(".corrupt"))
            print(f"warning: {p} unreadable ({exc}); moved aside, restarting the run")
            return None

    @property
    def done(self) -> bool:
        return (self.path / DONE).exists()

    def mark_done(self) -> None:
        (self.path / FAILED).unlink(missing_ok=True)
        (self.path / CHECKPOINT).unlink(missing_ok=True)  # the records are the result
        (self.path / DONE).write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))

    def clear_failed(self) -> None:
        """A new attempt: keep the last traceback as ``failed.prev``."""
        if (self.path / FAILED).exists():
            (self.path / FAILED).replace(self.path / (FAILED + ".prev"))

    def mark_failed(self, error: str) -> None:
        (self.path / FAILED).write_text(error)
