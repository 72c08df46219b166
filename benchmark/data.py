"""Datasets: the paper's by name, any local JSONL/CSV/parquet folder or file, or the hub.

A name resolves from a data directory (``--data-dir`` or ``$ACTUNE_DATA``; layout
``NAME/{train,dev,test}.jsonl`` + ``labels.json``) and otherwise from the Hugging Face hub.
Everything becomes a :class:`TextDataset` with integer labels, so nothing downstream cares where
the data came from.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .registry import Registry

SPLITS = ("train", "dev", "test")
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
DATA_SEED = 0  # dev/test carving and capping of dev: the same for every run seed


class DataError(ValueError):
    """Bad or missing data, with the file and the fix in the message."""


@dataclass(frozen=True)
class DatasetSpec:
    """What the paper fixes per dataset, and where the hub keeps it."""
    name: str
    dev_size: int = 1000                # dev texts at most (carved from train when absent)
    max_length: int = 128               # tokens per text
    batch_size_unlabelled: int = 32     # pseudo-labelled texts per training step
    hub: tuple | None = None            # (path, config) for datasets.load_dataset
    hub_text: str = "text"              # the hub's text and label columns
    hub_label: str = "label"
    hub_splits: dict = field(default_factory=lambda: {"train": "train", "test": "test"})
    text_field: str = "text"            # the text and label columns of local files
    label_field: str = "label"


DATASETS: Registry[DatasetSpec] = Registry("dataset")
for _spec in (
    # max tokens and unlabelled batch sizes: paper Table 2; dev sizes: Appendix A.
    DatasetSpec("sst2", dev_size=1000, max_length=32, batch_size_unlabelled=32,
                hub=("glue", "sst2"), hub_text="sentence",
                hub_splits={"train": "train", "test": "validation"}),
    DatasetSpec("agnews", dev_size=1000, max_length=96, batch_size_unlabelled=48,
                hub=("ag_news", None)),
    DatasetSpec("pubmed", dev_size=1000, max_length=96, batch_size_unlabelled=48,
                hub=("armanc/pubmed-rct20k", None),
                hub_splits={"train": "train", "dev": "validation", "test": "test"}),
    DatasetSpec("dbpedia", dev_size=1000, max_length=64, batch_size_unlabelled=32,
                hub=("dbpedia_14", None), hub_text="content"),
    DatasetSpec("trec", dev_size=500, max_length=64, batch_size_unlabelled=16,
                hub=("trec", None), hub_label="coarse_label"),
    DatasetSpec("chemprot", dev_size=500, max_length=128, batch_size_unlabelled=24),
):
    DATASETS.add(_spec.name, _spec)


@dataclass
class Split:
    texts: list[str]
    labels: np.ndarray                  # int64 class ids
    weak: np.ndarray | None = None      # (n, n_rules) votes, -1 = abstain (weak setting)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx) -> "Split":
        idx = np.asarray(idx, dtype=np.int64)
        return Split([self.texts[i] for i in idx], self.labels[idx],
                     None if self.weak is None else self.weak[idx])


@dataclass
class TextDataset:
    name: str
    label_names: list[str]
    train: Split
    dev: Split
    test: Split
    spec: DatasetSpec
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def fingerprint(self) -> str:
        h = hashlib.sha1()
        for split in (self.train, self.dev, self.test):
            for t in split.texts:
                h.update(t.encode("utf-8"))
                h.update(b"\0")
            h.update(split.labels.tobytes())
        return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# Resolution
# ----------------------------------------------------------------------------------------------

def default_data_dir() -> str | None:
    return os.environ.get("ACTUNE_DATA")


def looks_like_path(name: str) -> bool:
    """A dataset argument meant as a file or folder (registered names have no / or suffix)."""
    name = str(name)
    return any(sep in name for sep in ("/", os.sep)) or name.startswith(("~", ".")) \
        or Path(name).suffix in SUFFIXES


def check_dataset(name_or_path: str, data_dir: str | None = None) -> None:
    """Fail at once for a dataset that cannot be had: a missing path or data directory, or a
    registered name that is in no data directory while the hub is offline."""
    if Path(os.path.expanduser(str(name_or_path))).exists():
        return
    if looks_like_path(name_or_path):
        raise DataError(f"dataset path {str(name_or_path)!r} does not exist")
    spec = DATASETS.get(name_or_path)
    flag = "--data-dir" if data_dir else "$ACTUNE_DATA"
    data_dir = data_dir or default_data_dir()
    if data_dir:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise DataError(f"data directory {data_dir!r} ({flag}) does not exist")
        if (folder / spec.name).exists():
            return
        held = sorted(p.name for p in folder.iterdir() if p.is_dir())
        where = (f"{data_dir!r} has no {spec.name}/ folder (it holds: "
                 f"{', '.join(held) or 'nothing'})")
    else:
        where = "no data directory was given (--data-dir DIR or $ACTUNE_DATA)"
    fix = f"pass --data-dir DIR with DIR/{spec.name}/train.jsonl"
    if spec.hub is None:
        raise DataError(f"dataset {spec.name!r}: {where}, and it is not on the hub in a usable "
                        f"form; {fix}")
    from .hub import offline_reason

    reason = offline_reason("dataset")
    if reason:
        raise DataError(f"dataset {spec.name!r}: {where}, and {reason}; {fix}")


def load_dataset(name_or_path: str, data_dir: str | None = None, dev_size: int | None = None,
                 with_weak: bool = False) -> TextDataset:
    """Resolve a dataset by path, by name in the data directory, or by name on the hub."""
    path = Path(os.path.expanduser(str(name_or_path)))
    if path.exists():
        spec = DATASETS.get(path.stem) if path.stem in DATASETS else DatasetSpec(path.stem)
        return load_local(path, spec, dev_size, with_weak)
    if looks_like_path(name_or_path):
        raise DataError(f"dataset path {str(name_or_path)!r} does not exist")
    spec = DATASETS.get(name_or_path)  # unknown name -> error listing the known ones
    data_dir = data_dir or default_data_dir()
    if data_dir:
        folder = Path(data_dir).expanduser() / spec.name
        if folder.exists():
            return load_local(folder, spec, dev_size, with_weak)
    if with_weak:
        raise DataError(f"weak labels for {spec.name!r} come only from a data directory "
                        f"(NAME/weak_train.jsonl); none found under {data_dir!r}")
    return load_hub(spec, dev_size)


def load_local(path: Path, spec: DatasetSpec, dev_size: int | None = None,
               with_weak: bool = False) -> TextDataset:
    """A folder with train/dev/test files (dev and test optional), or one file to carve up."""
    dev_size = dev_size or spec.dev_size
    names = _read_label_names(path.parent if path.is_file() else path)
    if path.is_file():
        frames = {"train": _read_table(path)}
    else:
        frames = {}
        for split in SPLITS:
            stem = f"weak_{split}" if with_weak else split
            found = [path / f"{stem}{s}" for s in SUFFIXES if (path / f"{stem}{s}").exists()]
            if found:
                frames[split] = _read_table(found[0])
            elif with_weak:
                raise DataError(f"{path} has no {stem}.jsonl: dataset {spec.name!r} carries no weak "
                                f"labels, so the weak setting cannot run on it")
        if "train" not in frames:
            raise DataError(f"{path} has no train file (expected one of "
                            f"{', '.join('train' + s for s in SUFFIXES)})")
    for split, df in frames.items():
        _check_columns(df, spec, f"{path}:{split}")
    if names is None:  # no labels.json: the sorted label values of the training data
        names = sorted({str(v) for v in frames["train"][spec.label_field]}, key=_natural)
    splits = {k: _to_split(df, names, spec, f"{path}:{k}", with_weak) for k, df in frames.items()}
    return _finish(spec, names, splits, dev_size, str(path))


def load_hub(spec: DatasetSpec, dev_size: int | None = None) -> TextDataset:
    """Load from the Hugging Face hub (or any ``datasets.load_dataset`` path, e.g. a local folder)."""
    if spec.hub is None:
        raise DataError(f"dataset {spec.name!r} is not on the hub in a usable form; "
                        f"pass --data-dir DIR with DIR/{spec.name}/train.jsonl")
    import datasets

    try:
        raw = datasets.load_dataset(spec.hub[0], spec.hub[1]) if spec.hub[1] else \
            datasets.load_dataset(spec.hub[0])
    except Exception as exc:  # offline, or no such hub dataset
        raise DataError(f"could not load {spec.name!r} from the hub ({spec.hub[0]}): {exc}. "
                        f"Without internet, pass --data-dir DIR (or set ACTUNE_DATA) with "
                        f"DIR/{spec.name}/train.jsonl") from exc
    first = raw[spec.hub_splits["train"]]
    feature = first.features.get(spec.hub_label)
    names = list(getattr(feature, "names", None) or
                 sorted({str(v) for v in first[spec.hub_label]}, key=_natural))
    local = DatasetSpec(**{**spec.__dict__, "text_field": spec.hub_text,
                           "label_field": spec.hub_label})
    splits = {ours: _to_split(raw[theirs].to_pandas(), names, local, f"hub:{spec.hub[0]}:{theirs}")
              for ours, theirs in spec.hub_splits.items()}
    return _finish(spec, names, splits, dev_size or spec.dev_size, f"hub:{spec.hub[0]}")


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------

def _natural(s: str):
    return (0, int(s)) if s.lstrip("-").isdigit() else (1, s)


def _read_label_names(folder: Path) -> list[str] | None:
    f = folder / "labels.json"
    if not f.exists():
        return None
    try:
        names = json.loads(f.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{f} is not valid JSON: {exc}") from exc
    if isinstance(names, dict):  # {"0": "name"} or {"name": 0}
        names = [k for k, _ in sorted(names.items(), key=lambda kv: kv[1])] \
            if all(isinstance(v, int) for v in names.values()) else list(names.values())
    return [str(n) for n in names]


def _read_table(path: Path):
    import pandas as pd

    try:
        if path.suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=path.suffix == ".jsonl", dtype=False)
        if path.suffix == ".csv":
            return pd.read_csv(path, keep_default_na=False, dtype=str)
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
    except ValueError as exc:
        raise DataError(f"could not read {path}: {exc}") from exc
    raise DataError(f"unsupported file type {path.suffix!r} ({path}); use one of {SUFFIXES}")


def _check_columns(df, spec: DatasetSpec, where: str) -> None:
    for col in (spec.text_field, spec.label_field):
        if col not in df.columns:
            raise DataError(f"{where}: no column {col!r} (columns: {list(df.columns)})")


def _to_split(df, names: list[str], spec: DatasetSpec, where: str, with_weak: bool = False) -> Split:
    _check_columns(df, spec, where)
    texts = ["" if t is None else str(t) for t in df[spec.text_field].tolist()]
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise DataError(f"{where}: {len(empty)} empty text(s), first at row {empty[0]}")
    index = {n: i for i, n in enumerate(names)}
    labels = np.empty(len(texts), dtype=np.int64)
    for row, value in enumerate(df[spec.label_field].tolist()):
        key = str(value)
        if key in index:
            labels[row] = index[key]
        elif key.lstrip("-").isdigit() and key not in index and 0 <= int(key) < len(names) \
                and not any(n.lstrip("-").isdigit() for n in names):
            labels[row] = int(key)  # integer ids into labels.json
        else:
            raise DataError(f"{where}: label {value!r} at row {row} is not among the known labels "
                            f"{names} (labels.json)")
    weak = None
    if with_weak:
        if "weak_labels" not in df.columns:
            raise DataError(f"{where}: no 'weak_labels' column")
        weak = np.asarray(df["weak_labels"].tolist(), dtype=np.int64)
    return Split(texts, labels, weak)


def _finish(spec: DatasetSpec, names: list[str], splits: dict, dev_size: int, source: str
            ) -> TextDataset:
    rng = np.random.default_rng(DATA_SEED)
    train = splits["train"]
    if "test" not in splits:  # carve a test set from train (a single file, or no test file)
        n_test = max(1, min(len(train) // 5, 2000))
        perm = rng.permutation(len(train))
        splits["test"], train = train.subset(np.sort(perm[:n_test])), train.subset(np.sort(perm[n_test:]))
    if "dev" not in splits:
        n_dev = min(dev_size, len(train) // 5)
        perm = rng.permutation(len(train))
        splits["dev"], train = train.subset(np.sort(perm[:n_dev])), train.subset(np.sort(perm[n_dev:]))
    dev = splits["dev"]
    if len(dev) > dev_size:  # the paper keeps the dev set small (1000, or 500 for TREC/ChemProt)
        dev = dev.subset(np.sort(rng.permutation(len(dev))[:dev_size]))
    if len(train) == 0:
        raise DataError(f"{source}: the training split is empty")
    return TextDataset(spec.name, names, train, dev, splits["test"], spec, source)
