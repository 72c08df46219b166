"""ASST (Tomanek & Hahn 2009; Simeoni et al. 2020): active semi-supervised self-training.

Two rules side by side: query the ``budget`` most uncertain unlabelled points under any
registered :class:`UncertaintyMethod` (``uncertainty``, entropy by default; ``bald``, ``cal``, ...
work too, with their own per-dataset defaults), and pseudo-label the rest of the pool where the
model's top probability reaches ``threshold`` (confidence-thresholded self-training, as ST).
"""
from __future__ import annotations

from .base import Method, RoundView, Selection, UncertaintyMethod, top_k
from .registry import get_method, register
from .st import confident, pseudo_candidates


def uncertainty_method(name: str, dataset: str) -> UncertaintyMethod:
    """A registered uncertainty method by name, with its defaults for ``dataset``."""
    cls = get_method(name)
    if not issubclass(cls, UncertaintyMethod):
        raise ValueError(f"{name!r} is not an uncertainty method (it defines no per-point score); "
                         f"use e.g. entropy, bald or cal")
    return cls(**cls.defaults(dataset))


@register("asst")
class ASST(Method):
    family = "SSAL"
    params = {"uncertainty": "entropy", "threshold": 0.9}
    settings = ("ssal", "weak")
    cost = "one inference pass + the uncertainty method's own cost"

    @classmethod
    def al_counterpart(cls, params: dict) -> str | None:
        return str(params["uncertainty"])

    def select(self, view: RoundView) -> Selection:
        scorer = uncertainty_method(str(self.hp["uncertainty"]), view.dataset)
        ids = view.unlabelled_ids
        with view.timer("uncertainty"):
            scores = scorer.scores(view, ids)
        query = top_k(scores, ids, view.budget, view.rng)
        with view.timer("pseudo_labels"):
            pseudo, labels = confident(view.probs, pseudo_candidates(view, query),
                                       float(self.hp["threshold"]))
        return Selection(query=query, pseudo_ids=pseudo, pseudo_labels=labels)
