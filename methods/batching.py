"""Batches of token ids: how the loop and the methods pad the pool's unpadded id arrays
(``view.extras.tokens``), so a method running a model over the pool batches it as inference does.
"""
from __future__ import annotations

import numpy as np
import torch


def collate(seqs: list[np.ndarray], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a batch to its own longest sequence: (input ids, attention mask)."""
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for row, s in enumerate(seqs):
        ids[row, :len(s)] = s
        mask[row, :len(s)] = 1
    return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)


def length_sorted_batches(tokens: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
    """Indices of ``tokens`` in batches of similar length (little padding per batch)."""
    order = np.argsort([len(t) for t in tokens], kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
