"""Resolve one run's configuration and its identity (the hash that names its run folder).

Order, later wins: preset defaults < the dataset's paper values < the preset's per-dataset entry
< the setting's own keys (``Setting.options``) < the method's (per-dataset) defaults for its own
parameters < the preset's method parameters (all datasets, then per dataset) < ``--set
key=value`` overrides.
A setting's protocol values (``Setting.config_defaults``, e.g. the weak setting's budget) are
computed from the preset and the overrides and replace preset values, never ``--set`` ones.
"""
from __future__ import annotations

import difflib
import hashlib
import json
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


def dataset_spec(dataset: str) -> DatasetSpec:
    """The registered spec for a name, or for a path named after a registered dataset."""
    stem = Path(str(dataset)).stem if os.path.exists(os.path.expanduser(str(dataset))) else dataset
    if stem in DATASETS:
        return DATASETS.get(stem)
    if os.path.exists(os.path.expanduser(str(dataset))):
        return DatasetSpec(stem)
    return DATASETS.get(dataset)  # raises with the known names


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
    # the setting's protocol (the weak setting's 500-label budget) over the preset, not over --set
    cfg.update({k: v for k, v in SETTINGS.get(setting).config_defaults(dict(cfg)).items()
                if k not in explicit})
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
