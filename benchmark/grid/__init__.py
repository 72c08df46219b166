"""Grids of runs (methods x datasets x seeds x settings x override sweeps) on SLURM or locally.

A grid file (YAML) names the axes; every combination is a *cell*, whose identity is the hash of
its resolved config, so its run folder is the same on every launch. Everything a grid knows
about its cells is read from disk (and the scheduler), never from ``job.result()``: one failed
task of a job array breaks that path, and unpickling a shared folder's files would run code.

``spec`` reads a grid file and expands it into cells, ``status`` tells a cell's state,
``launch`` submits cells (a cell resumes from its last round after a requeue) and ``cli`` is
``python -m benchmark grid``.
"""
from .cli import add_arguments, main  # noqa: F401
from .launch import CellJob, launch, slurm_executor, slurm_parameters, wait_for  # noqa: F401
from .spec import Cell, Grid  # noqa: F401
from .status import (ACTIVE, ATTEMPT_FILE, DONE_STATE, FAILED_STATE, GRACE_S,  # noqa: F401
                     INCOMPLETE, JOB_FILE, NOT_LAUNCHED, QUEUED, RUNNING, CellStatus, cell_status,
                     format_status, grid_status, time_left)
