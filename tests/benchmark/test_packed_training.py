"""Training steps: the packed step computes the loss and gradients of the padded step, for every
kind of objective (labelled + pseudo-labelled CE, ACTUNE's Eq. 14 mask, COSINE's teacher and
contrastive term on the features)."""
import copy

import numpy as np
import pytest
import torch

from benchmark.backbones import build_classifier, collate
from benchmark.training import TrainSet, step_loss
from methods.actune import ThresholdedSelfTraining
from methods.base import Objective
from methods.cosine import CosineObjective


UNS = np.arange(5, 21)   # the step's pseudo-labelled batch (positions in the pseudo set)


def _sets(rng):
    tokens = [rng.integers(1000, 2000, size=int(n)).astype(np.int32)
              for n in rng.integers(2, 25, 40)]
    labelled = TrainSet(tokens, np.arange(0, 12), rng.integers(0, 3, 12))
    pseudo = TrainSet(tokens, np.arange(12, 40), rng.integers(0, 3, 28),
                      rng.uniform(0.5, 2.0, 28).astype(np.float32))
    return labelled, pseudo


def _no_dropout_model(tiny_backbone, device="cpu"):
    model = build_classifier(tiny_backbone, 3, seed=0, dropout=0.0)   # every dropout off
    return model.to(device).train()


def _loss_and_grads(model, objective, labelled, pseudo, step, pack):
    model.zero_grad()
    objective.start(model)
    loss = step_loss(model, objective, step, 10, labelled, np.arange(8), pseudo, UNS,
                     pad_id=0, amp="off", pack=pack)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def _pseudo_confidence(model, pseudo):
    """p(y~ | x) of the step's pseudo-labelled texts, from a plain padded forward."""
    device = next(model.parameters()).device
    with torch.no_grad():
        logits, _ = model(*collate([pseudo.tokens[i] for i in pseudo.ids[UNS]], 0, device))
    y = torch.as_tensor(pseudo.y[UNS], device=device)
    return logits.softmax(-1).gather(1, y[:, None]).squeeze(1).cpu()


@pytest.mark.parametrize("kind", ["ce", "eq14", "cosine"])
def test_packed_step_gives_the_padded_step_loss_and_gradients(tiny_backbone, kind, device):
    labelled, pseudo = _sets(np.random.default_rng(0))
    model = _no_dropout_model(tiny_backbone, device)
    if kind == "ce":
        objective, step = Objective(lam=0.7), 1
    elif kind == "eq14":
        p = np.sort(_pseudo_confidence(model, pseudo).numpy())
        cut = int(np.argmax(np.diff(p[2:-2]))) + 2        # a threshold far from every p
        objective, step = ThresholdedSelfTraining(lam=1.0, gamma=(p[cut] + p[cut + 1]) / 2), 1
    else:  # the teacher refreshes at step 2 and labels the pseudo batch from its own forward
        objective, step = CosineObjective(torch.ones(3), 0.0, 1, 1.0, 0.1, 1.0), 2
    packed = _loss_and_grads(model, copy.deepcopy(objective), labelled, pseudo, step, pack=True)
    padded = _loss_and_grads(model, copy.deepcopy(objective), labelled, pseudo, step, pack=False)
    assert torch.allclose(packed[0], padded[0], atol=1e-6)
    assert len(packed[1]) == len(padded[1]) > 10
    for a, b in zip(packed[1], padded[1]):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    if kind == "eq14":  # the mask is part of what was compared, and it is not all-or-nothing
        passed = int((_pseudo_confidence(model, pseudo) > objective.gamma).sum())
        assert 0 < passed < len(UNS)


def test_labelled_only_steps_pack_too(tiny_backbone):
    labelled, _ = _sets(np.random.default_rng(1))
    model = _no_dropout_model(tiny_backbone)
    a = _loss_and_grads(model, Objective(), labelled, None, 1, pack=True)
    b = _loss_and_grads(model, Objective(), labelled, None, 1, pack=False)
    assert torch.allclose(a[0], b[0], atol=1e-6)
    for ga, gb in zip(a[1], b[1]):
        assert torch.allclose(ga, gb, atol=1e-5, rtol=1e-4)
