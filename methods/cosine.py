"""COSINE (Yu et al. 2021): contrastive-regularised self-training of a pre-trained LM.

Random labels as ST; the whole rest of the pool is pseudo-labelled with *soft* targets and the
loss decides per batch what to learn from:

* soft targets  q_ij = (p_ij^2 / f_j) / sum_j' (p_ij'^2 / f_j'), f_j = sum_i p_ij the teacher's
  soft class frequency over the pool: sharpens each prediction and counteracts the teacher's
  bias to its frequent classes;
* confidence    w_i = 1 - H(q_i) / log C; only samples with w_i > ``xi`` enter the loss;
* L_c           w_i KL(q_i || p_student(x_i)) over the confident samples;
* R_1           contrastive loss on the student's L2-normalised features of confident pairs:
                d^2 if their pseudo-labels agree, max(0, ``margin`` - d)^2 otherwise;
* R_2           confidence regulariser KL(u || p_student(x_i)) (u uniform) against
                over-confidence;
* loss          CE(labelled) + lambda (L_c + ``contrast_weight`` R_1 + ``confreg_weight`` R_2).

The teacher is refreshed every ``update_every`` steps: :meth:`CosineObjective.start` receives the
live student, and the teacher is then a frozen copy of it, recomputing each batch's targets from
the batch's inputs (``TrainBatch.inputs_u``). Until the first refresh the teacher is the previous
round's model, whose targets arrive as the Selection's soft labels (the loop's student starts from
the pre-trained weights, so a copy of it would know nothing yet). f is computed once per round
over the candidate pool from the previous round's model and kept for the refreshed teachers
(COSINE re-estimates it over the pool at each refresh; a loss sees only batches).
Features are L2-normalised so that the margin (1.0 as in COSINE) is on a fixed scale.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F

from .base import Method, Objective, RoundView, Selection, TrainBatch, entropy
from .random import random_query
from .registry import register
from .st import pseudo_candidates


def sharpen(probs: torch.Tensor, freq: torch.Tensor) -> torch.Tensor:
    """COSINE's soft targets p^2 / f, normalised per row."""
    q = probs.float() ** 2 / freq.float().clamp_min(1e-12)
    return q / q.sum(-1, keepdim=True).clamp_min(1e-12)


def confidence(q: torch.Tensor) -> torch.Tensor:
    """1 - H(q) / log C: 1 for a one-hot target, 0 for the uniform one."""
    return 1.0 - entropy(q) / math.log(q.shape[-1])


def contrastive(features: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over pairs i < j of d^2 (same label) or max(0, margin - d)^2 (different labels)."""
    n = len(labels)
    if n < 2:
        return features.sum() * 0.0
    z = F.normalize(features.float(), dim=-1)
    d = torch.cdist(z, z)
    same = (labels[:, None] == labels[None, :]).float()
    pair = same * d ** 2 + (1 - same) * F.relu(margin - d) ** 2
    i, j = torch.triu_indices(n, n, offset=1, device=features.device)
    return pair[i, j].mean()


class CosineObjective(Objective):
    def __init__(self, freq: torch.Tensor, xi: float, update_every: int, contrast_weight: float,
                 confreg_weight: float, margin: float, lam: float = 1.0):
        super().__init__(lam)
        self.freq, self.xi, self.update_every = freq, xi, int(update_every)
        self.contrast_weight, self.confreg_weight = contrast_weight, confreg_weight
        self.margin = margin
        self.student = self.teacher = None
        self.refreshes = 0

    def start(self, model: torch.nn.Module) -> None:
        self.student, self.teacher, self.refreshes = model, None, 0

    def _refresh(self) -> None:
        self.teacher = copy.deepcopy(self.student).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.refreshes += 1

    def targets(self, batch: TrainBatch) -> torch.Tensor:
        """The batch's soft targets: the Selection's until the first refresh, then the teacher's."""
        if self.update_every > 0 and batch.step > 1 and (batch.step - 1) % self.update_every == 0:
            self._refresh()
        if self.teacher is None:
            y = batch.y_u
            return y.float() if y.dim() == 2 else F.one_hot(y, batch.logits_u.shape[-1]).float()
        with torch.no_grad():
            logits, _ = self.teacher(*batch.inputs_u)
        return sharpen(logits.float().softmax(-1), self.freq.to(logits.device))

    def pseudo_loss(self, batch: TrainBatch) -> torch.Tensor | None:
        q = self.targets(batch)
        w = confidence(q)
        mask = w > self.xi
        if not mask.any():
            return None
        log_p = F.log_softmax(batch.logits_u[mask].float(), -1)
        qm, wm = q[mask], (w * batch.w_u)[mask]
        kl = (qm * (torch.log(qm.clamp_min(1e-12)) - log_p)).sum(-1)
        l_c = (wm * kl).mean()
        c = qm.shape[-1]
        r2 = (-math.log(c) - log_p.mean(-1)).mean()          # KL(uniform || p)
        r1 = contrastive(batch.features_u[mask], qm.argmax(-1), self.margin)
        return l_c + self.contrast_weight * r1 + self.confreg_weight * r2


@register("cosine")
class COSINE(Method):
    family = "ST"
    queries_like = "random"
    params = {"xi": 0.6, "update_every": 50, "contrast_weight": 1.0, "confreg_weight": 0.1,
              "margin": 1.0, "lam": 1.0}
    settings = ("ssal", "weak")
    cost = "one inference pass; a teacher forward per self-training step"

    def __init__(self, **params):
        super().__init__(**params)
        self.freq: torch.Tensor | None = None

    def select(self, view: RoundView) -> Selection:
        query = random_query(view)
        with view.timer("pseudo_labels"):
            cand = pseudo_candidates(view, query)
            p = view.probs[torch.as_tensor(cand)]
            self.freq = p.sum(0)
            q = sharpen(p, self.freq)
        return Selection(query=query, pseudo_ids=cand, pseudo_labels=q.numpy())

    def objective(self, round: int, rounds: int) -> Objective:
        if self.freq is None:           # round 0: labelled data only
            return Objective(float(self.hp["lam"]))
        return CosineObjective(self.freq, float(self.hp["xi"]), int(self.hp["update_every"]),
                               float(self.hp["contrast_weight"]), float(self.hp["confreg_weight"]),
                               float(self.hp["margin"]), float(self.hp["lam"]))

    def state_dict(self) -> dict:
        return {"freq": None if self.freq is None else self.freq.tolist()}

    def load_state_dict(self, state: dict) -> None:
        freq = state.get("freq")
        self.freq = None if freq is None else torch.tensor(np.asarray(freq, dtype=np.float32))
