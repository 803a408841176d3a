"""QValueModel: save/load round trips, hidden mode = sequence mode, Triton = torch, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, LlamaConfig

from qstar_native.value import QValueModel

H = 32


def tiny_config(**kw) -> LlamaConfig:
    base = dict(vocab_size=64, hidden_size=H, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=128, eos_token_id=63, pad_token_id=0)  # fmt: skip
    return LlamaConfig(**(base | kw))


def tiny_lm(seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config(**kw)).eval()


def trained(qvm: QValueModel, steps: int = 30) -> QValueModel:
    """A few Adam steps regressing q on random targets, so the weights differ from any init."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, qvm.hidden_size, generator=g), torch.rand(64, generator=g)
    head = [p for n, p in qvm.named_parameters() if not n.startswith("backbone.")]
    opt = torch.optim.Adam(head, lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(qvm(x), y)
        loss.backward()
        opt.step()
    return qvm


@pytest.mark.parametrize(
    "kw",
    [dict(head="linear"), dict(head="mlp", mlp_width=8, act="silu", out_act="sigmoid"),
     dict(head="mlp", mlp_width=5, act="relu", out_act="tanh", norm="layer")],  # fmt: skip
)
def test_trained_head_round_trip_gives_identical_scores(tmp_path, kw):
    qvm = QValueModel(H, **kw)
    x = torch.randn(7, H, generator=torch.Generator().manual_seed(2))
    before = qvm.score_hidden(x)
    trained(qvm)
    q = qvm.score_hidden(x)
    assert not torch.allclose(q, before)  # training changed the head: loading cannot fake it by re-init
    qvm.save_pretrained(tmp_path / "qvm")
    cfg = json.loads((tmp_path / "qvm" / "config.json").read_text())
    assert cfg["head"] == kw["head"] and "backbone" not in cfg
    loaded = QValueModel.from_pretrained(tmp_path / "qvm")
    assert torch.equal(loaded.score_hidden(x), q)


@pytest.mark.parametrize("tied", [True, False])
def test_round_trip_with_saved_backbone(tmp_path, tied):
    lm = tiny_lm(tie_word_embeddings=tied)
    qvm = trained(QValueModel(backbone=lm, head="mlp", mlp_width=6, out_act="sigmoid"))
    seqs = [[1, 2, 3], [4, 5, 6, 7, 8], [9]]
    q = qvm.score_sequences(seqs)
    qvm.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["backbone"]["class"] == "LlamaForCausalLM"
    loaded = QValueModel.from_pretrained(tmp_path)
    assert type(loaded.backbone).__name__ == "LlamaForCausalLM"
    assert torch.equal(loaded.score_sequences(seqs), q)
    # A head saved alone loads onto a backbone given at load time.
    qvm.save_pretrained(tmp_path / "head", save_backbone=False)
    again = QValueModel.from_pretrained(tmp_path / "head", backbone=lm)
    assert torch.equal(again.score_sequences(seqs), q)
    assert QValueModel.from_pretrained(tmp_path / "head").backbone is None


def test_automodel_trunk_backbone():
    torch.manual_seed(0)
    trunk = AutoModel.from_config(tiny_config()).eval()
    qvm = QValueModel(backbone=trunk)
    ids = torch.tensor([[3, 4, 5, 6]])
    want = qvm.score_hidden(trunk(input_ids=ids).last_hidden_state[0, -1:])
    assert torch.allclose(qvm.score_sequences([ids[0].numpy()]), want, atol=1e-6)


def test_sequence_batches_are_padding_invariant():
    qvm = QValueModel(backbone=tiny_lm(), head="mlp", mlp_width=4)
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 63, n) for n in (3, 11, 1, 7, 7, 20)]
    batched = qvm.score_sequences(seqs, batch_size=4)
    alone = torch.cat([qvm.score_sequences([s]) for s in seqs])
    assert torch.allclose(batched, alone, atol=1e-5)


def test_hidden_mode_equals_sequence_mode_on_policy_candidates():
    from qstar_native.policy import HFPolicy

    class CharTok:
        eos_token_id = 63

        def decode(self, ids):
            return "".join("\n" if i == 10 else chr(97 + i % 26) for i in ids if i != 63)

    lm = tiny_lm(seed=3)
    qvm = trained(QValueModel(backbone=lm, head="mlp", mlp_width=8, out_act="sigmoid"))
    policy = HFPolicy(lm, CharTok(), num_candidates=3, max_step_tokens=5, kv_blocks=512)
    roots = [np.array([1, 2, 3, 4], np.int32), np.array([5, 6], np.int32)]
    first = policy.propose(roots)
    # Second round: children's states come partly from the prefix cache, which must not matter.
    states = [np.concatenate([r, c.tokens]) for j, r in enumerate(roots) for c in first.of_node(j)]
    second = policy.propose(states[:2])
    pairs = [(r, c) for j, r in enumerate(roots) for c in first.of_node(j)] + [(s, c) for j, s in enumerate(states[:2]) for c in second.of_node(j)]
    q_hidden = qvm.score_hidden(torch.cat([first.hidden, second.hidden]))
    q_seq = qvm.score_sequences([np.concatenate([s, c.tokens]) for s, c in pairs])
    assert len(pairs) >= 4
    assert torch.allclose(q_hidden, q_seq, atol=1e-5, rtol=0)


def test_triton_backend_matches_torch():
    # conftest.py sets TRITON_INTERPRET=1, so this runs the kernel in the CPU interpreter.
    qvm = trained(QValueModel(H, head="mlp", mlp_width=20, out_act="sigmoid"))
    x = torch.randn(5, H, generator=torch.Generator().manual_seed(4))
    q_t = qvm.score_hidden(x, backend="triton")
    q_r = qvm.score_hidden(x, backend="torch")
    assert q_t.shape == q_r.shape == (5,) and q_t.dtype == torch.float32
    assert torch.allclose(q_t, q_r, atol=1e-5)


# ---- bad input ------------------------------------------------------------------------------


def test_head_width_must_match_backbone(tmp_path):
    with pytest.raises(ValueError, match="hidden_size=16 does not match the backbone's hidden size 32"):
        QValueModel(16, backbone=tiny_lm())
    qvm = QValueModel(16)
    with pytest.raises(ValueError, match="width 32 but this QValueModel's head reads width 16"):
        qvm.score_hidden(torch.randn(2, 32))
    qvm.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="saved head reads width 16 but the backbone's hidden size is 32"):
        QValueModel.from_pretrained(tmp_path, backbone=tiny_lm())


def test_nan_hidden_state_is_named():
    x = torch.randn(3, H)
    x[1, 5] = float("nan")
    with pytest.raises(ValueError, match="hidden state of candidate 1 .*NaN"):
        QValueModel(H).score_hidden(x)


def test_empty_batches():
    qvm = QValueModel(backbone=tiny_lm())
    with pytest.raises(ValueError, match="empty batch"):
        qvm.score_hidden(torch.zeros(0, H))
    with pytest.raises(ValueError, match="empty batch"):
        qvm.score_sequences([])
    with pytest.raises(ValueError, match=r"seqs\[1\] is empty"):
        qvm.score_sequences([[1], []])


def test_other_bad_input():
    with pytest.raises(ValueError, match="head='mlp' needs mlp_width"):
        QValueModel(H, head="mlp")
    with pytest.raises(ValueError, match="out_act='softmax'"):
        QValueModel(H, out_act="softmax")
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        QValueModel()
    with pytest.raises(ValueError, match="no backbone"):
        QValueModel(H).score_sequences([[1, 2]])
    with pytest.raises(ValueError, match="must be 2-D"):
        QValueModel(H).score_hidden(torch.zeros(H))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        QValueModel.from_pretrained(tmp_path / "nope")
    QValueModel(H).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        QValueModel.from_pretrained(tmp_path)
    QValueModel(H).save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        QValueModel.from_pretrained(tmp_path)
    # Weights that do not fit the config (an MLP head's tensors under a linear config).
    QValueModel(H, head="mlp", mlp_width=4).save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(QValueModel(H).config_dict()))
    with pytest.raises(ValueError, match="does not fit config.json"):
        QValueModel.from_pretrained(tmp_path)
