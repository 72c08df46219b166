"""Random sampling: the fine-tuning baseline ("Finetune (Random)" in the paper)."""
from .base import Method, RoundView, Selection
from .registry import register


@register("random")
class Random(Method):
    family = "AL"
    cost = "no inference"
    needs_inference = False

    def select(self, view: RoundView) -> Selection:
        k = min(view.budget, len(view.unlabelled_ids))
        return Selection(query=view.rng.choice(view.unlabelled_ids, size=k, replace=False))
