"""Settings: where the initial labels come from and whether unlabelled data enters training.

``al``: no unlabelled data in training (pseudo-labels a method returns are ignored);
``ssal``: a method's pseudo-labels join training. Each setting is a registered object, so the
loop never names one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .registry import Registry


@dataclass
class InitialLabels:
    ids: np.ndarray          # pool ids that start with a training label
    labels: np.ndarray       # their labels (gold, or weak in the weak setting)
    clean: np.ndarray        # the subset whose gold label was revealed (counts against budget)
    info: dict               # extra facts for the round-0 record (e.g. weak-label accuracy)
    round0_only: bool = False  # True: labels outside ``clean`` train round 0 only; from round 1
                               # the labelled set is the clean labels and the rest is unlabelled


class Setting:
    name = ""
    allow_pseudo = True
    description = ""
    options: dict = {}   # config keys this setting adds (with defaults); ``--set`` may change them
    needs_weak_labels = False  # True: the loop loads the dataset's rule votes (weak_*.jsonl)
    counts_initial = True      # False: the initial labels are free, the budget check skips them

    def config_defaults(self, cfg: dict) -> dict:
        """Config values this setting's protocol fixes, given the preset's resolved ``cfg``.

        ``benchmark.config.resolve`` applies them over the preset, except for keys the user set
        with ``--set``. None for ``al``/``ssal``.
        """
        return {}

    def initial(self, pool_y: np.ndarray, size: int, rng: np.random.Generator,
                dataset=None, pool_idx: np.ndarray | None = None,
                cfg: dict | None = None) -> InitialLabels:
        """``size`` random pool points with their gold labels (the paper's initial set)."""
        if size > len(pool_y):
            raise ValueError(f"initial_size {size} is larger than the pool ({len(pool_y)})")
        ids = np.sort(rng.choice(len(pool_y), size=size, replace=False))
        return InitialLabels(ids, pool_y[ids], ids, {})


SETTINGS: Registry[Setting] = Registry("setting")


class ActiveLearning(Setting):
    name, allow_pseudo = "al", False
    description = "active learning: labelled data only in training"


class SemiSupervised(Setting):
    name, allow_pseudo = "ssal", True
    description = "semi-supervised active learning: pseudo-labels join training"


for _setting in (ActiveLearning(), SemiSupervised()):
    SETTINGS.add(_setting.name, _setting)


# ----------------------------------------------------------------------------------------------
# Weak supervision (paper section 3.3, Fig. 2)
# ----------------------------------------------------------------------------------------------

WEAK_TOTAL_BUDGET = 500   # clean labels over all rounds in the paper's weak setting


def majority_vote(votes: np.ndarray, num_classes: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(covered, label) per row of rule votes (-1 = abstain): the most voted class, ties broken
    uniformly at random by ``rng``; rows where every rule abstains are not covered (label -1)."""
    votes = np.asarray(votes, dtype=np.int64)
    counts = np.zeros((len(votes), num_classes), dtype=np.int64)
    rows, cols = np.nonzero(votes >= 0)
    np.add.at(counts, (rows, votes[rows, cols]), 1)
    covered = counts.sum(1) > 0
    top = counts == counts.max(1, keepdims=True)
    # a uniform random key per (row, class); the largest key among the tied classes wins
    key = np.where(top, rng.random(counts.shape), -1.0)
    label = np.where(covered, key.argmax(1), -1)
    return covered, label


class WeakSupervision(Setting):
    """The initial labelled set is the whole pool labelled by majority vote over the labelling
    rules (the paper uses Snorkel's label model; majority vote is WRENCH's simplest and has no
    parameters to fit); rows where every rule abstains stay unlabelled. The model of round 0 is
    fine-tuned on these weak labels (Eq. 1), then each round queries clean labels from the oracle
    and self-trains as the method says. Weak labels cost nothing, so they do not count against
    the label budget (``counts_initial``); ``n_labels`` counts clean labels only.

    ``weak_labels`` (an option of this setting) says what the weak labels do after round 0:
    ``init`` (default): they gave the initial model f(theta(0)) (and through its predictions the
    memory bank's first entry), and from round 1 the labelled set is the clean queried labels
    only, every other pool text unlabelled (the paper: "fine-tune the pre-trained LM f(theta(0))
    on Xl. After that, we adopt ACTUNE for active self-training"); ``keep``: they stay in the
    labelled set, at full weight, in every round, next to the clean labels.

    Protocol values (:meth:`config_defaults`, never over ``--set``): the paper's 500 clean labels
    in all, i.e. ``budget = min(preset budget, 500 // rounds)``; and, because the weak set is the
    whole pool (~4,800 texts of TREC's 5,033), a bound on supervised training steps: a round
    never trains longer than the last round of an AL run under the same preset,
    ``max_steps = epochs * ceil((initial_size + rounds * budget) / batch_size)`` (cpu: 414
    steps, paper: 2,070, smoke: 40 through ``min_steps``), unless the preset sets ``max_steps``.
    """
    name, allow_pseudo = "weak", True
    needs_weak_labels, counts_initial = True, False
    options = {"weak_labels": "init"}
    READINGS = ("init", "keep")
    description = ("weak supervision: start from rule-based (majority-vote) labels of the whole "
                   "pool, then query clean labels (500 in all); weak_labels=init|keep")

    def config_defaults(self, cfg: dict) -> dict:
        if cfg.get("weak_labels") not in self.READINGS:
            raise ValueError(f"weak_labels must be one of {', '.join(self.READINGS)}, "
                             f"got {cfg.get('weak_labels')!r}")
        out = {"budget": max(1, min(int(cfg["budget"]), WEAK_TOTAL_BUDGET // int(cfg["rounds"])))}
        if not cfg.get("max_steps"):
            largest = int(cfg["initial_size"]) + int(cfg["rounds"]) * int(cfg["budget"])
            out["max_steps"] = max(int(cfg["min_steps"]),
                                   int(cfg["epochs"]) * math.ceil(largest / int(cfg["batch_size"])))
        return out

    def initial(self, pool_y: np.ndarray, size: int, rng: np.random.Generator,
                dataset=None, pool_idx: np.ndarray | None = None,
                cfg: dict | None = None) -> InitialLabels:
        weak = None if dataset is None else dataset.train.weak
        if weak is None:
            name = getattr(dataset, "name", "this dataset")
            raise ValueError(f"the weak setting needs rule votes (weak_train.jsonl with a "
                             f"'weak_labels' column), and {name!r} has none; the datasets with "
                             f"weak labels are trec and chemprot")
        votes = weak if pool_idx is None else weak[pool_idx]
        covered, label = majority_vote(votes, dataset.num_classes, rng)
        ids = np.flatnonzero(covered)
        info = {"weak_coverage": float(covered.mean()),
                "weak_acc": float((label[ids] == pool_y[ids]).mean()) if len(ids) else None,
                "n_weak": int(len(ids))}
        reading = (cfg or {}).get("weak_labels", self.options["weak_labels"])
        return InitialLabels(ids, label[ids], np.zeros(0, dtype=np.int64), info,
                             round0_only=reading == "init")


SETTINGS.add(WeakSupervision.name, WeakSupervision())
