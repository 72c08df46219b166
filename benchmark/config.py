"""Resolve one run's configuration and its identity (the hash that names its run folder).

Order, later wins: preset defaults < the dataset's paper values < the preset's per-dataset entry
< the setting's own keys (``Setting.options``) < the method's (per-dataset) defaults for its own
parameters < the preset's method parameters (all datasets, then per dataset) < ``--set
key=value`` overrides.
A setting's protocol values (``Setting.config_defaults``, e.g. the weak setting's budget) are
computed from the preset and the overrides and replace preset values, never ``--set`` ones.

Every value is checked here (type and range, :data:`SCHEMA`; a method parameter against the type
of its default, then by the method itself), so a bad one stops the command with one line that
names the key, before data is loaded or a run folder exists.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
from pathlib import Path

import yaml

from .data import DATASETS, DatasetSpec
from .presets import PRESETS
from .registry import UnknownNameError
from .settings import SETTINGS

# Keys that say where or how fast a run happens, not what it computes: not part of its identity.
NOT_HASHED = ("threads", "data_dir", "compact_vocab")


class ConfigError(ValueError):
    """A configuration value of the wrong type or out of range; the message names the key."""


def _show(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


def _integer(low: int, optional: bool = False):
    def check(key, v):
        if (v is None and optional) or (isinstance(v, int) and not isinstance(v, bool)
                                        and v >= low):
            return None
        return f"{key} must be an integer >= {low}{' or null' if optional else ''}, got {_show(v)}"
    return check


def _number(low: float, high: float | None = None, low_open: bool = False,
            high_open: bool = False):
    span = (f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            if high is not None else f"{'>' if low_open else '>='} {low:g}")

    def check(key, v):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
                and (v > low if low_open else v >= low) \
                and (high is None or (v < high if high_open else v <= high)):
            return None
        return f"{key} must be a number {span}, got {_show(v)}"
    return check


def _choice(*options):
    def check(key, v):
        if v in options and isinstance(v, str):
            return None
        return f"{key} must be one of {', '.join(map(repr, options))}, got {_show(v)}"
    return check


def _boolean(key, v):
    if isinstance(v, bool):
        return None
    hint = " (YAML 1.2: yes/no/on/off are words here)" if isinstance(v, str) else ""
    return f"{key} must be true or false{hint}, got {_show(v)}"


def _name(key, v):
    if isinstance(v, str) and v.strip():
        return None
    return f"{key} must be a non-empty name, got {_show(v)}"


# Type and range of every preset key (``benchmark.presets.BASE``) and of the run's identity.
SCHEMA = {
    "backbone": _name, "rounds": _integer(1), "initial_size": _integer(1), "budget": _integer(1),
    "pool_size": _integer(1, True), "dev_size": _integer(1, True), "test_size": _integer(1, True),
    "max_length": _integer(2, True), "batch_size": _integer(1),
    "batch_size_unlabelled": _integer(1, True), "eval_batch_size": _integer(1),
    "epochs": _integer(1), "min_steps": _integer(0), "max_steps": _integer(1, True),
    "st_steps": _integer(1), "eval_every": _integer(1), "lr": _number(0, low_open=True),
    "weight_decay": _number(0), "warmup": _number(0, 1), "max_grad_norm": _number(0, low_open=True),
    "dropout": _number(0, 1, high_open=True), "pooling": _choice("cls", "mean"),
    "amp": _choice("auto", "bf16", "off"), "threads": _integer(1, True),
    "compact_vocab": _boolean, "save_features": _boolean, "seed": _integer(0),
}


def _param_error(key: str, value, default) -> str | None:
    """A method parameter must have its default's type (a number for a float default)."""
    if isinstance(default, bool):
        return _boolean(key, value)
    if isinstance(default, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else \
            f"{key} must be an integer, got {_show(value)}"
    if isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value)
        return None if ok else f"{key} must be a finite number, got {_show(value)}"
    if isinstance(default, str):
        return _name(key, value)
    if default is None:
        return None if value is None or isinstance(value, str) else \
            f"{key} must be a name or null, got {_show(value)}"
    return None


def validate(cfg: dict, defaults: dict | None = None) -> None:
    """Raise :class:`ConfigError` for the first bad value (keys in :data:`SCHEMA` order)."""
    for key, check in SCHEMA.items():
        if key in cfg:
            problem = check(key, cfg[key])
            if problem:
                raise ConfigError(problem)
    for key, value in (cfg.get("params") or {}).items():
        problem = _param_error(key, value, (defaults or {}).get(key))
        if problem:
            raise ConfigError(problem)


def check_sources(cfg: dict, data_dir: str | None = None) -> None:
    """Before any work: can the backbone and the dataset be had? Offline, fail at once."""
    from .backbones import check_backbone
    from .data import check_dataset

    check_backbone(cfg["backbone"])
    check_dataset(cfg["dataset"], data_dir)


def dataset_spec(dataset: str) -> DatasetSpec:
    """The registered spec for a name, or for a path named after a registered dataset."""
    from .data import DataError, looks_like_path

    if not isinstance(dataset, str) or not dataset.strip():
        raise ConfigError(f"dataset must be a name or a path, got {_show(dataset)}")
    stem = Path(str(dataset)).stem if os.path.exists(os.path.expanduser(str(dataset))) else dataset
    if stem in DATASETS:
        return DATASETS.get(stem)
    if os.path.exists(os.path.expanduser(str(dataset))):
        return DatasetSpec(stem)
    if looks_like_path(dataset):
        raise DataError(f"dataset path {dataset!r} does not exist")
    if dataset not in DATASETS:
        raise UnknownNameError(f"{DATASETS.unknown_message(dataset)}; or give a path to a "
                               f"folder or file (there is none named {dataset!r} here)")
    return DATASETS.get(dataset)


def parse_overrides(pairs: list[str] | None) -> dict:
    """``["beta=0.1", "rounds=3"]`` -> ``{"beta": 0.1, "rounds": 3}`` (values parsed as YAML)."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = _parse_value(value)
    return out


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with 1.2's booleans: only true/false. YAML 1.1 also reads yes/no/on/off (and y/n) as
    booleans, which turns ``amp: off`` into False; grid files and ``--set`` both load with this."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"))


def load_yaml(text: str):
    return yaml.load(text, Loader=_Yaml12Loader)


def _parse_value(text: str):
    """YAML 1.2 scalars, and ``2e-4`` is a number (YAML 1.1 reads it as a string)."""
    value = load_yaml(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def resolve(method: str, dataset: str, seed: int = 0, setting: str = "al", preset: str = "cpu",
            overrides: dict | None = None) -> dict:
    from methods import get_method

    cls = get_method(method)
    if isinstance(seed, str) and seed.strip().isdigit():
        seed = int(seed)
    validate({"seed": seed})
    spec = dataset_spec(dataset)
    SETTINGS.get(setting)
    if setting not in cls.settings:
        raise ValueError(f"method {cls.name!r} does not run in the {setting!r} setting "
                         f"(it runs in: {', '.join(cls.settings)})")
    p = PRESETS.get(preset)
    cfg = dict(p.values)
    for key, value in (("max_length", spec.max_length), ("dev_size", spec.dev_size),
                       ("batch_size_unlabelled", spec.batch_size_unlabelled)):
        if cfg.get(key) is None:
            cfg[key] = value
    cfg.update(p.per_dataset.get(spec.name, {}))
    cfg.update(SETTINGS.get(setting).options)   # the setting's own keys (weak_labels)
    params = cls.defaults(spec.name)
    for given in (p.method_params, p.dataset_method_params.get(spec.name, {})):
        params.update({k: v for k, v in given.items() if k in params})
    explicit = set()
    for key, value in (overrides or {}).items():
        name = key.split(".", 1)[1] if key.startswith("params.") else key
        if isinstance(value, str):  # grid files are YAML too: "2e-4" arrives as a string
            value = _parse_value(value)
        if name in params:
            params[name] = value
        elif name in cfg:
            cfg[name] = value
            explicit.add(name)
        else:
            known = sorted(cfg) + sorted(params)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(f"unknown setting {key!r} for --set.{hint} "
                                   f"Known: {', '.join(known)}")
    validate(cfg)
    # the setting's protocol (the weak setting's 500-label budget) over the preset, not over --set
    cfg.update({k: v for k, v in SETTINGS.get(setting).config_defaults(dict(cfg)).items()
                if k not in explicit})
    validate({**cfg, "params": params}, cls.defaults(spec.name))
    cls(**params)  # the method's own checks (ranges, names of its components)
    dataset_id = os.path.abspath(os.path.expanduser(dataset)) \
        if os.path.exists(os.path.expanduser(str(dataset))) else str(dataset)
    cfg.update(method=cls.name, dataset=dataset_id, dataset_name=spec.name, seed=int(seed),
               setting=setting, preset=preset, params=params)
    return cfg


def config_hash(cfg: dict) -> str:
    ident = {k: v for k, v in cfg.items() if k not in NOT_HASHED}
    return hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_name(cfg: dict) -> str:
    return f"{cfg['method']}_{cfg['dataset_name']}_{cfg['setting']}_s{cfg['seed']}_{config_hash(cfg)}"
