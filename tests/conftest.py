"""Shared fixtures: a tiny local backbone, a toy dataset folder, the shared data, hand-made views."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Token caches and the tiny backbone go to a per-session folder, not the user's home."""
    old = os.environ.get("ACTUNE_CACHE")
    os.environ["ACTUNE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield
    if old is None:
        os.environ.pop("ACTUNE_CACHE", None)
    else:
        os.environ["ACTUNE_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> str:
    """A 2-layer random BERT in a local folder (MiniLM's tokenizer): the loop's test backbone."""
    from benchmark.backbones import make_tiny_backbone

    return str(make_tiny_backbone(tmp_path_factory.mktemp("backbones") / "tiny"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = Path(os.environ.get("ACTUNE_DATA", ROOT.parent / "shared" / "data"))
    if not (d / "trec" / "train.jsonl").exists():
        pytest.skip(f"shared data not found at {d}")
    return d


TOPICS = {
    "sport": ["the team won the match", "a goal in the final minute", "the coach praised players",
              "fans cheered the striker", "the league title race"],
    "food": ["the soup tasted of garlic", "bake the bread for an hour", "a recipe with fresh basil",
             "the chef grilled the fish", "sweet apple pie for dessert"],
    "tech": ["the new phone has a faster chip", "install the software update",
             "the server crashed overnight", "a laptop with more memory", "the app stores data"],
}


def write_toy_dataset(folder: Path, n_per_class: int = 60, seed: int = 0) -> Path:
    """Three separable topics as train/dev/test.jsonl + labels.json (the shared-data layout)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.json").write_text(json.dumps(list(TOPICS)))
    for split, n in (("train", n_per_class), ("dev", n_per_class // 3), ("test", n_per_class // 3)):
        rows = []
        for label, phrases in TOPICS.items():
            for _ in range(n):
                a, b = rng.choice(len(phrases), 2, replace=False)
                rows.append({"text": f"{phrases[a]} and {phrases[b]} #{rng.integers(1000)}",
                             "label": label})
        rng.shuffle(rows)
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture
def toy_data(tmp_path) -> Path:
    return write_toy_dataset(tmp_path / "toy")


@pytest.fixture
def tiny_overrides(tiny_backbone) -> dict:
    """Overrides that make a smoke-preset run take a second or two on the tiny backbone."""
    return {"backbone": tiny_backbone, "pool_size": 120, "initial_size": 12, "budget": 8,
            "rounds": 2, "dev_size": 30, "test_size": 30, "epochs": 1, "min_steps": 4,
            "st_steps": 4, "eval_every": 2, "max_length": 24}


@pytest.fixture
def make_view():
    """Build a RoundView from hand-made probabilities/features (methods' unit tests)."""
    from methods.base import Extras, RoundView

    def build(probs, features=None, labelled_ids=(), labelled_y=None, budget=1, round=1,
              rounds=10, setting="ssal", seed=0, unlabelled_ids=None, extras=None,
              dataset="toy"):
        probs = torch.as_tensor(np.asarray(probs, dtype=np.float32))
        n, c = probs.shape
        if features is None:
            features = torch.eye(n, max(n, 2))[:, :max(n, 2)]
        features = torch.as_tensor(np.asarray(features, dtype=np.float32))
        lab = np.asarray(labelled_ids, dtype=np.int64)
        if labelled_y is None:
            labelled_y = probs[lab].argmax(-1).numpy() if len(lab) else np.zeros(0, np.int64)
        if unlabelled_ids is None:
            unlabelled_ids = np.setdiff1d(np.arange(n), lab)
        return RoundView(round=round, rounds=rounds, setting=setting, budget=budget, probs=probs,
                         features=features, labelled_ids=lab,
                         labelled_y=np.asarray(labelled_y, dtype=np.int64),
                         unlabelled_ids=np.asarray(unlabelled_ids, dtype=np.int64),
                         rng=np.random.default_rng(seed), dataset=dataset, num_classes=c,
                         extras=extras or Extras(), allow_pseudo=setting != "al")
    return build


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=[
    pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")])])
def device(request) -> str:
    """A test taking ``device`` runs on the CPU, and on CUDA where there is one
    (``pytest -m cuda`` runs only the CUDA half: scripts/gpu_check.sh)."""
    return request.param


@pytest.fixture
def stop_after_round():
    """``stop_after_round(n)``: a run ``log`` that stops the run once round ``n`` is recorded
    (KeyboardInterrupt between rounds, like a SLURM time-out), to test resuming."""
    def make(n: int):
        def log(line: str):
            if line.startswith(f"round {n:2d}"):
                raise KeyboardInterrupt
        return log
    return make
