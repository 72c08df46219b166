"""Fine-tuning: AdamW, linear warm-up and decay, dev-set model selection, per-sample weights.

Generic on purpose: a method changes the loss through its :class:`methods.base.Objective`,
never through a branch here, and reports what its loss did through ``Objective.diagnostics``.
How many steps a round trains is one rule, :func:`training_steps`: ``epochs`` over the labelled
set without pseudo-labels; with them at least ``st_steps`` (paper B.4) and never fewer than the
same labelled set gets without them (budget parity), each step on one labelled and one
pseudo-labelled batch, passed through the model together, packed without padding (``step_loss``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import f1_score

from methods.base import Objective, TrainBatch

from .backbones import (Classifier, autocast, bf16_units, collate, pack_texts, predict,
                        supports_packing)


@dataclass
class TrainSet:
    """Training data as pool ids into ``tokens`` with labels and weights."""
    tokens: list
    ids: np.ndarray
    y: np.ndarray                   # class ids (n,) or soft targets (n, C)
    w: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)


def evaluate(model: Classifier, tokens: list, y: np.ndarray, pad_id: int, batch_size: int,
             amp: str) -> dict:
    probs, _ = predict(model, tokens, pad_id, batch_size, amp)
    pred = probs.argmax(-1).numpy()
    return {"acc": float((pred == y).mean()),
            "f1": float(f1_score(y, pred, average="macro", labels=np.unique(y), zero_division=0))}


def _batches(n: int, size: int, rng: np.random.Generator):
    """Endless shuffled mini-batches over ``n`` items (reshuffled each epoch)."""
    while True:
        order = rng.permutation(n)
        for i in range(0, n, size):
            yield order[i:i + size]


def _labels(data: TrainSet, idx: np.ndarray, device):
    y = torch.as_tensor(data.y[idx])
    y = y.float() if y.dim() == 2 else y.long()
    w = torch.ones(len(idx)) if data.w is None else torch.as_tensor(data.w[idx]).float()
    return y.to(device), w.to(device), torch.as_tensor(data.ids[idx])


def training_steps(cfg: dict, n_labelled: int, n_pseudo: int = 0) -> int:
    """The protocol's step count for a round, in every preset and setting.

    Without pseudo-labels: ``epochs`` passes over the labelled set, at least ``min_steps``, at
    most ``max_steps``. With pseudo-labels: ``max(st_steps, that count)``. Each step draws one
    labelled batch either way, so a self-training round never makes fewer passes over its
    labelled set than an AL round on the same set: a fixed ``st_steps`` alone (the paper's 2000)
    would starve late rounds, whose labelled sets outgrow it, of supervised training.
    """
    steps = max(int(cfg["epochs"]) * math.ceil(n_labelled / cfg["batch_size"]),
                int(cfg["min_steps"]))
    if cfg.get("max_steps"):
        steps = min(steps, int(cfg["max_steps"]))
    if n_pseudo > 0:
        steps = max(int(cfg["st_steps"]), steps)
    return steps


def step_loss(model: Classifier, objective: Objective, step: int, steps: int,
              labelled: TrainSet, lab_idx: np.ndarray, pseudo: TrainSet | None,
              uns_idx: np.ndarray | None, pad_id: int, amp: str, pack: bool = True
              ) -> torch.Tensor:
    """One step's loss: the labelled and pseudo-labelled texts in one forward, the objective once.

    The texts are packed end to end into rows (:func:`pack_texts`), each attending only to
    itself, so the step computes on almost no padding; the objective sees both streams' logits
    and features in batch order, as from a padded forward, so every objective stays exact (only
    float rounding and dropout draws differ). ``pack=False`` is the padded forward, kept for
    ``python -m benchmark bench``'s side-by-side comparison (and used where an encoder cannot pack).
    """
    device = next(model.parameters()).device
    seqs = [labelled.tokens[labelled.ids[i]] for i in lab_idx]
    if pseudo is not None:
        seqs += [pseudo.tokens[pseudo.ids[i]] for i in uns_idx]
    n = len(lab_idx)
    if pack and supports_packing(model):
        inputs = (pack_texts(seqs, pad_id, device),)
        inputs_u = (pack_texts(seqs[n:], pad_id, device),) if pseudo is not None else None
    else:
        ids, mask = collate(seqs, pad_id, device)
        inputs, inputs_u = (ids, mask), (ids[n:], mask[n:])
    with autocast(device, amp):
        logits, feats = model(*inputs)
    y, w, _ = _labels(labelled, lab_idx, device)
    batch = TrainBatch(step, steps, logits[:n], feats[:n], y, w)
    if pseudo is not None:
        batch.y_u, batch.w_u, batch.ids_u = _labels(pseudo, uns_idx, device)
        batch.logits_u, batch.features_u = logits[n:], feats[n:]
        batch.inputs_u = inputs_u
    with autocast(device, amp):
        return objective(batch)


def fine_tune(model: Classifier, labelled: TrainSet, dev_tokens: list, dev_y: np.ndarray,
              cfg: dict, seed: int, pad_id: int, pseudo: TrainSet | None = None,
              objective: Objective | None = None, progress=None) -> dict:
    """Train ``model`` in place and load its best dev state; return training statistics."""
    objective = objective or Objective()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if pseudo is not None and len(pseudo) == 0:
        pseudo = None
    steps = training_steps(cfg, len(labelled), 0 if pseudo is None else len(pseudo))
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg["weight_decay"]},
              {"params": no_decay, "weight_decay": 0.0}]
    try:  # the fused kernel: one optimizer step 4-5x faster on CPU and GPU alike
        opt = torch.optim.AdamW(groups, lr=cfg["lr"], fused=True)
    except (RuntimeError, TypeError):
        opt = torch.optim.AdamW(groups, lr=cfg["lr"])
    warm = max(1, int(round(cfg["warmup"] * steps)))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))
    objective.start(model)
    lab_iter = _batches(len(labelled), cfg["batch_size"], rng)
    uns_iter = _batches(len(pseudo), cfg["batch_size_unlabelled"], rng) if pseudo else None
    best = {"acc": -1.0, "step": 0}
    best_state = None
    start = time.perf_counter()
    eval_seconds = 0.0

    def checkpoint(step: int):
        nonlocal best_state, eval_seconds
        t0 = time.perf_counter()
        score = evaluate(model, dev_tokens, dev_y, pad_id, cfg["eval_batch_size"], cfg["amp"])
        eval_seconds += time.perf_counter() - t0
        if score["acc"] > best["acc"]:
            best.update(score, step=step)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.train()

    model.train()
    device = next(model.parameters()).device
    for step in range(1, steps + 1):
        lab_idx = next(lab_iter)
        uns_idx = next(uns_iter) if uns_iter is not None else None
        with bf16_units(device, cfg["amp"]):             # its forward and backward products
            loss = step_loss(model, objective, step, steps, labelled, lab_idx, pseudo, uns_idx,
                             pad_id, cfg["amp"])
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["max_grad_norm"], foreach=True)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % cfg["eval_every"] == 0 or step == steps:
            checkpoint(step)
        if progress is not None:
            progress.update(1)
    model.load_state_dict(best_state)
    model.eval()
    info = {"steps": steps, "best_step": best["step"], "dev_acc_best": best["acc"],
            "train_seconds": time.perf_counter() - start - eval_seconds,
            "dev_eval_seconds": eval_seconds,
            "labelled_passes": steps * cfg["batch_size"] / len(labelled)}
    if pseudo is not None:
        info["pseudo_passes"] = steps * cfg["batch_size_unlabelled"] / len(pseudo)
    return {**info, **objective.diagnostics()}
