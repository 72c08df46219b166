"""Backbones: the offline MiniLM, order-restoring batched inference, MC dropout that cleans up,
packed batches that give what padded ones give, bf16 on CPUs without native bf16."""
import contextlib

import numpy as np
import pytest
import torch

from benchmark.backbones import (Bf16OnFp32Units, build_classifier, collate, load_tokenizer,
                                 mc_dropout_probs, pack_texts, predict, resolve_backbone,
                                 supports_packing, tokenize)


def test_offline_minilm_loads_and_classifies():
    path = resolve_backbone("minilm")
    assert (__import__("pathlib").Path(path) / "config.json").exists()
    model = build_classifier("minilm", 3, seed=0)
    assert model.encoder.config.hidden_size == 384 and model.encoder.config.num_hidden_layers == 6
    texts = ["what is the capital of france ?", "who wrote hamlet ?", "how far is the moon ?"]
    probs, feats = predict(model, tokenize(texts, "minilm", 32), load_tokenizer("minilm").pad_token_id)
    assert probs.shape == (3, 3) and feats.shape == (3, 384)
    assert torch.allclose(probs.sum(-1), torch.ones(3), atol=1e-5)
    n_params = sum(p.numel() for p in model.encoder.parameters())
    assert 22_000_000 < n_params < 23_500_000  # all-MiniLM-L6-v2: 22.7M


def test_fresh_classifier_each_round_starts_from_pretrained_weights(tiny_backbone):
    a = build_classifier(tiny_backbone, 2, seed=0)
    with torch.no_grad():
        for p in a.parameters():
            p.add_(1.0)  # "training" one round's model must not leak into the next
    b = build_classifier(tiny_backbone, 2, seed=0)
    c = build_classifier(tiny_backbone, 2, seed=0)
    for pb, pc in zip(b.parameters(), c.parameters()):
        assert torch.equal(pb, pc)
    emb_a = a.encoder.embeddings.word_embeddings.weight
    assert not torch.equal(emb_a, b.encoder.embeddings.word_embeddings.weight)


def test_length_sorted_batches_restore_input_order(tiny_backbone):
    model = build_classifier(tiny_backbone, 4, seed=1)
    rng = np.random.default_rng(0)
    tokens = [rng.integers(1000, 2000, size=int(n)).astype(np.int32) for n in rng.integers(2, 20, 23)]
    batched, feats = predict(model, tokens, 0, batch_size=5)
    for i in (0, 7, 22):
        single, f1 = predict(model, [tokens[i]], 0, batch_size=1)
        assert torch.allclose(batched[i], single[0], atol=1e-5)
        assert torch.allclose(feats[i], f1[0], atol=1e-4)


def test_mc_dropout_is_on_only_during_the_passes(tiny_backbone):
    model = build_classifier(tiny_backbone, 3, seed=0, dropout=0.3)
    model.eval()
    tokens = [np.arange(1000, 1000 + n, dtype=np.int32) for n in (5, 9, 3, 12)]
    mc = mc_dropout_probs(model, tokens, 0, passes=6, batch_size=12)
    assert mc.shape == (6, 4, 3)
    assert not torch.allclose(mc[0], mc[1])  # the passes differ: dropout was on
    assert all(not m.training for m in model.modules())  # ...and is off again
    p1, _ = predict(model, tokens, 0)
    p2, _ = predict(model, tokens, 0)
    assert torch.equal(p1, p2)
    model.train()
    mc_dropout_probs(model, tokens, 0, passes=2)
    assert all(m.training for m in model.modules())  # a training model is left training


def test_no_dropout_means_every_pass_equals_inference(tiny_backbone):
    model = build_classifier(tiny_backbone, 3, seed=0, dropout=0.0)
    for m in model.modules():
        if hasattr(m, "dropout") and isinstance(getattr(m, "dropout"), torch.nn.Dropout):
            m.dropout.p = 0.0
    tokens = [np.arange(1000, 1000 + n, dtype=np.int32) for n in (5, 9, 3)]
    mc = mc_dropout_probs(model, tokens, 0, passes=3)
    p, _ = predict(model, tokens, 0)
    assert torch.allclose(mc, p.expand(3, -1, -1), atol=1e-5)


def test_compact_vocabulary_keeps_special_ids_and_embeddings(tiny_backbone):
    from benchmark.backbones import compact_vocabulary, remap_tokens

    tokens = [np.array([101, 2054, 2003, 102], dtype=np.int32), np.array([101, 7592, 102])]
    vocab = compact_vocabulary([tokens], pad_id=0)
    assert list(vocab) == [0, 101, 102, 2003, 2054, 7592]
    remapped = remap_tokens(tokens, vocab)
    assert list(remapped[0]) == [1, 4, 3, 2] and list(remapped[1]) == [1, 5, 2]
    full = build_classifier(tiny_backbone, 2, seed=0)
    small = build_classifier(tiny_backbone, 2, seed=0, vocab=vocab)
    assert small.encoder.get_input_embeddings().weight.shape[0] == 6
    p_full, f_full = predict(full, tokens, 0)
    p_small, f_small = predict(small, remapped, 0)
    assert torch.allclose(p_full, p_small) and torch.allclose(f_full, f_small)


def test_bf16_inference_is_bit_identical_to_per_batch_autocast_and_restores_weights(tiny_backbone):
    from benchmark.backbones import autocast, bf16_units, collate, inference_precision

    model = build_classifier(tiny_backbone, 3, seed=0).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(1)
    tokens = [rng.integers(1000, 2000, size=int(n)).astype(np.int32) for n in rng.integers(2, 20, 9)]
    ids, mask = collate(tokens, 0, "cpu")
    cpu = torch.device("cpu")
    with torch.inference_mode():
        with bf16_units(cpu, "bf16"), autocast(cpu, "bf16"):
            reference, _ = model(ids, mask)
        with inference_precision(model, cpu, "bf16"):
            assert model.head.weight.dtype == torch.bfloat16      # cast once for the pass
            once, _ = model(ids, mask)
    assert torch.equal(reference, once)
    try:
        with inference_precision(model, cpu, "bf16"):
            raise RuntimeError("a failing batch")
    except RuntimeError:
        pass
    for k, v in model.state_dict().items():                      # float32 weights are back
        assert v.dtype == before[k].dtype and torch.equal(v, before[k])


# ----------------------------------------------------------------------------------------------
# Packing (training without padding)
# ----------------------------------------------------------------------------------------------

def test_pack_texts_puts_each_text_whole_in_one_row_first_fit_decreasing():
    seqs = [np.arange(10, 10 + n) for n in (3, 5, 2, 4)]
    p = pack_texts(seqs, pad_id=0, device="cpu")
    # widest text first: 5 fills row 0, 4 opens row 1, 3 does not fit beside it (row 2), 2 joins 3
    assert p.input_ids.shape == (3, 5)
    assert p.rows.tolist() == [2, 0, 2, 1] and p.starts.tolist() == [0, 0, 3, 0]
    for i, s in enumerate(seqs):
        r, a = int(p.rows[i]), int(p.starts[i])
        assert p.input_ids[r, a:a + len(s)].tolist() == s.tolist()
        assert p.position_ids[r, a:a + len(s)].tolist() == list(range(len(s)))
        assert (p.segments[r, a:a + len(s)] == i).all()
    assert p.input_ids[1, 4] == 0 and p.segments[1, 4] == -2   # row 1's padding: its own segment
    assert p.real_share == 14 / 15


def _tiny_roberta(folder):
    from transformers import RobertaConfig, RobertaModel

    torch.manual_seed(0)
    cfg = RobertaConfig(vocab_size=1200, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=40, pad_token_id=1)
    return RobertaModel(cfg, add_pooling_layer=False)


@pytest.mark.parametrize("arch", ["bert-sdpa", "bert-eager", "roberta"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_packed_forward_and_gradients_equal_the_padded_ones(tiny_backbone, arch, pooling, tmp_path):
    """Packing is exact: outputs and parameter gradients as from the padded batch, up to rounding
    (dropout off; fp32). Positions restart per text (RoBERTa's from padding_idx + 1), and the
    block-diagonal mask keeps texts sharing a row from seeing each other."""
    from benchmark.backbones import Classifier, _pristine_encoder

    if arch == "roberta":
        encoder, pad = _tiny_roberta(tmp_path), 1
    else:
        import copy
        encoder, pad = copy.deepcopy(_pristine_encoder(tiny_backbone)), 0
        encoder.config._attn_implementation = arch.split("-")[1]
    torch.manual_seed(1)
    model = Classifier(encoder, 3, dropout=0.0, pooling=pooling).train()
    for m in model.modules():                  # attention dropout included
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    assert supports_packing(model)
    rng = np.random.default_rng(0)
    seqs = [rng.integers(5, 1100, size=int(n)) for n in rng.integers(2, 30, 11)]
    grads = []
    for inputs in ((pack_texts(seqs, pad, "cpu"),), collate(seqs, pad, "cpu")):
        model.zero_grad()
        logits, feats = model(*inputs)
        (logits.square().sum() + feats.sum()).backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
        if len(grads) == 1:
            packed = (logits.detach(), feats.detach())
    assert torch.allclose(packed[0], logits, atol=1e-5)
    assert torch.allclose(packed[1], feats, atol=1e-5)
    assert len(grads[0]) == len(grads[1]) > 10
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_packing_is_left_to_encoders_it_is_known_to_be_exact_for(tiny_backbone):
    model = build_classifier(tiny_backbone, 2, seed=0)
    assert supports_packing(model)
    model.encoder.config._attn_implementation = "flash_attention_2"   # ignores a 4-D mask
    assert not supports_packing(model)


def _step(model, ids, mask, mode):
    """Logits and all gradients of one training step in fp32, torch's bf16 or bf16 on fp32 units."""
    from benchmark.backbones import Bf16OnFp32Units

    model.zero_grad()
    torch.manual_seed(3)                                          # the same dropout draws
    units = Bf16OnFp32Units() if mode == "fp32 units" else contextlib.nullcontext()
    with units:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode != "fp32"):
            logits, _ = model(ids, mask)
            loss = torch.nn.functional.cross_entropy(logits.float(), torch.arange(len(ids)) % 3)
        loss.backward()
    return logits.detach().float(), torch.cat([p.grad.flatten() for p in model.parameters()
                                               if p.grad is not None])


def test_bf16_on_fp32_units_gives_torch_bf16_numbers_not_fp32_ones(tiny_backbone):
    """Upcast bf16 products are exact in fp32, so only summation order separates them from
    torch's bf16 kernels: a training step's logits and gradients land on bf16's numbers, orders
    of magnitude closer to them than fp32's are."""
    model = build_classifier(tiny_backbone, 3, seed=0).train()
    rng = np.random.default_rng(1)
    tokens = [rng.integers(1000, 2000, size=int(n)).astype(np.int32)
              for n in rng.integers(2, 40, 16)]
    ids, mask = collate(tokens, 0, "cpu")
    fp32, bf16, units = (_step(model, ids, mask, m) for m in ("fp32", "bf16", "fp32 units"))
    assert units[0].dtype == bf16[0].dtype
    off = {name: ((x[0] - bf16[0]).abs().max(), (x[1] - bf16[1]).norm() / bf16[1].norm())
           for name, x in {"fp32": fp32, "units": units}.items()}
    assert off["fp32"][0] > 1e-3 and off["fp32"][1] > 1e-3       # bf16 is visibly not fp32
    assert off["units"][0] <= off["fp32"][0] / 20
    assert off["units"][1] <= off["fp32"][1] / 100
    a, b = torch.randn(5, 7).bfloat16(), torch.randn(7, 3).bfloat16()
    with Bf16OnFp32Units():
        out = torch.mm(a, b)
    assert out.dtype == torch.bfloat16 and torch.equal(out, (a.float() @ b.float()).bfloat16())


def test_bf16_units_only_where_bf16_runs_without_native_kernels(monkeypatch):
    from benchmark import backbones as bb

    cpu = torch.device("cpu")
    monkeypatch.delenv(bb.AMP_AUTO_ENV, raising=False)
    monkeypatch.setattr(bb, "cpu_has_bf16", lambda: False)
    assert isinstance(bb.bf16_units(cpu, "bf16"), Bf16OnFp32Units)
    assert not isinstance(bb.bf16_units(cpu, "off"), Bf16OnFp32Units)
    assert not isinstance(bb.bf16_units(cpu, "auto"), Bf16OnFp32Units)   # auto: fp32 here
    with bb.bf16_units(cpu, "bf16"):                                    # entered once
        assert not isinstance(bb.bf16_units(cpu, "bf16"), Bf16OnFp32Units)
    monkeypatch.setenv(bb.AMP_AUTO_ENV, "bf16")                         # auto pinned to bf16
    assert bb.amp_enabled(cpu, "auto") and isinstance(bb.bf16_units(cpu, "auto"), Bf16OnFp32Units)
    monkeypatch.setattr(bb, "cpu_has_bf16", lambda: True)               # native kernels
    assert not isinstance(bb.bf16_units(cpu, "bf16"), Bf16OnFp32Units)
    monkeypatch.setenv(bb.AMP_AUTO_ENV, "fp32")
    assert not bb.amp_enabled(cpu, "auto") and bb.amp_enabled(cpu, "bf16")
    monkeypatch.setenv(bb.AMP_AUTO_ENV, "yes")
    with pytest.raises(ValueError, match="ACTUNE_AMP_AUTO must be 'bf16' or 'fp32'"):
        bb.amp_enabled(cpu, "auto")
