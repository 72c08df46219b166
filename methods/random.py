"""Random sampling: the fine-tuning baseline ("Finetune (Random)" in the paper).

:func:`random_query` is also how the self-training baselines (ST, UST, COSINE) spend their labels.
"""
import numpy as np

from .base import Method, RoundView, Selection
from .registry import register


def random_query(view: RoundView) -> np.ndarray:
    """``budget`` unlabelled ids drawn uniformly (seeded by the round's RNG)."""
    k = min(view.budget, len(view.unlabelled_ids))
    return view.rng.choice(view.unlabelled_ids, size=k, replace=False)


@register("random")
class Random(Method):
    family = "AL"
    cost = "no inference"
    needs_inference = False

    def select(self, view: RoundView) -> Selection:
        return Selection(query=random_query(view))
