"""A grid's spec: the axes a grid file (YAML) names, and their expansion into cells.

Every combination is a *cell*, whose identity is the hash of its resolved config, so its run
folder (``RunStore(out, cfg).path``) is the same on every launch.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from ..config import ConfigError, load_yaml, resolve
from ..registry import UnknownNameError
from ..results import RunStore
from ..settings import SETTINGS

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

