"""Tiny models and a character tokenizer for the policy tests (no downloads, float32, ~30k params)."""

from __future__ import annotations

import string

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, PreTrainedTokenizerFast, Qwen2Config

FAMILIES = ("gpt2", "llama", "qwen2")
CHARS = string.ascii_letters + string.digits + " .,=+-*/?!\n"


def char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character; id 0 is <eos>."""
    vocab = {"<eos>": 0, "<unk>": 1, **{c: i + 2 for i, c in enumerate(CHARS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>")


def tiny_model(family: str, *, seed: int = 0, hidden: int = 32, layers: int = 2, vocab: int = 2 + len(CHARS)):
    torch.manual_seed(seed)
    common = dict(vocab_size=vocab, bos_token_id=None, eos_token_id=0, pad_token_id=None)
    if family == "gpt2":
        cfg = GPT2Config(n_embd=hidden, n_layer=layers, n_head=4, n_positions=1024, **common)
    elif family == "llama":
        cfg = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, **common)
    elif family == "qwen2":
        cfg = Qwen2Config(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, **common)
    else:
        raise ValueError(family)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()


@torch.inference_mode()
def full_logits(model, tokens) -> torch.Tensor:
    """The oracle: a plain forward of the whole sequence, no cache."""
    return model(torch.as_tensor(np.asarray(tokens, dtype=np.int64))[None]).logits[0].float()


def step_logprob(model, state, step) -> float:
    """Sum of log-probs of ``step`` after ``state`` from a full forward (the oracle for Steps.logprob)."""
    seq = np.concatenate([np.asarray(state), np.asarray(step)])
    lp = torch.log_softmax(full_logits(model, seq), -1)
    n = len(state)
    return float(sum(lp[n - 1 + j, int(t)] for j, t in enumerate(step)))
