"""The served decoder against DeepSeek-OCR's decoder configuration, at the real widths.

DeepSeek-OCR's language model (``language_config``: use_mla false, greedy top-k, softmax scoring,
no top-k renormalisation, routed scaling 1.0, two shared experts, first layer dense) is written
out below in plain torch as the reference, following the official remote code's semantics
(``LlamaAttention`` with rotate-half RoPE, theta 10000, RMSNorm eps 1e-6 in float32, MoE gate in
float32). Real hidden size, heads, experts and expert widths; one dense and one MoE layer and a
small vocabulary keep it to a few seconds. Weights go through the published tensor names and
the engine's loader.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from worker.engine.deepseek.architecture import DecoderArchitecture
from worker.engine.deepseek.checkpoint import inspect_checkpoint
from worker.engine.deepseek.loader import load_weights
from worker.engine.deepseek.tiny_checkpoint import TINY_ARCHITECTURE, random_weights, write_checkpoint

DECODER = DecoderArchitecture(vocab_size=512, num_hidden_layers=2)
ARCHITECTURE = replace(TINY_ARCHITECTURE, decoder=DECODER)
SEED = 11
HEAD_DIM = DECODER.hidden_size // DECODER.num_attention_heads
PREFILL_TOKENS = 48
NEW_TOKENS = 12

pytestmark = pytest.mark.slow


def realistic_weights() -> dict[str, torch.Tensor]:
    """Seeded weights scaled so attention is not uniform and routing is decisive."""
    weights = random_weights(ARCHITECTURE, seed=SEED)
    for name in list(weights):
        if name.endswith(("self_attn.q_proj.weight", "self_attn.k_proj.weight")):
            weights[name] = weights[name] * 3
        elif name.endswith("mlp.gate.weight"):
            weights[name] = weights[name] * 4
        elif name == "model.embed_tokens.weight":
            weights[name] = weights[name] * DECODER.hidden_size**0.5
    return weights


class ReferenceDecoder:
    """DeepSeek-OCR's decoder, written from its configuration; full recomputation, no cache."""

    def __init__(self, weights: dict[str, torch.Tensor], *, normalise_top_k: bool = False) -> None:
        self.w = weights
        self.normalise_top_k = normalise_top_k
        self.routes: list[torch.Tensor] = []

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        w = self.w
        hidden = w["model.embed_tokens.weight"][ids]
        cos, sin = self._rope(len(ids))
        for layer in range(DECODER.num_hidden_layers):
            prefix = f"model.layers.{layer}."
            hidden = hidden + self._attention(
                self._norm(hidden, prefix + "input_layernorm.weight"), prefix, cos, sin
            )
            normed = self._norm(hidden, prefix + "post_attention_layernorm.weight")
            if layer < DECODER.first_k_dense_replace:
                hidden = hidden + self._swiglu(normed, prefix + "mlp.")
            else:
                hidden = hidden + self._moe(normed, prefix + "mlp.")
        return F.linear(self._norm(hidden, "model.norm.weight"), w["lm_head.weight"])

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        x32 = x.float()
        return self.w[name] * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + DECODER.rms_norm_eps))

    def _rope(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        inverse = 1.0 / (DECODER.rope_theta ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float) / HEAD_DIM))
        angles = torch.arange(length, dtype=torch.float)[:, None] * inverse[None]
        doubled = torch.cat([angles, angles], dim=-1)
        return doubled.cos(), doubled.sin()

    def _attention(self, x: torch.Tensor, prefix: str, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        length, heads = x.shape[0], DECODER.num_attention_heads

        def project(name: str) -> torch.Tensor:
            return (
                F.linear(x, self.w[f"{prefix}self_attn.{name}_proj.weight"])
                .view(length, heads, HEAD_DIM)
                .transpose(0, 1)
            )

        def rotate(t: torch.Tensor) -> torch.Tensor:
            first, second = t[..., : HEAD_DIM // 2], t[..., HEAD_DIM // 2 :]
            return t * cos + torch.cat([-second, first], dim=-1) * sin

        q, k, v = rotate(project("q")), rotate(project("k")), project("v")
        scores = (q @ k.transpose(-1, -2)) * HEAD_DIM**-0.5
        causal = torch.ones(length, length, dtype=torch.bool).triu(1)
        attended = scores.masked_fill(causal, float("-inf")).softmax(-1) @ v
        return F.linear(
            attended.transpose(0, 1).reshape(length, -1), self.w[f"{prefix}self_attn.o_proj.weight"]
        )

    def _swiglu(self, x: torch.Tensor, prefix: str) -> torch.Tensor:
        gate = F.silu(F.linear(x, self.w[prefix + "gate_proj.weight"]))
        return F.linear(
            gate * F.linear(x, self.w[prefix + "up_proj.weight"]), self.w[prefix + "down_proj.weight"]
        )

    def _moe(self, x: torch.Tensor, prefix: str) -> torch.Tensor:
        scores = F.linear(x.float(), self.w[prefix + "gate.weight"].float()).softmax(-1)
        weights, experts = scores.topk(DECODER.num_experts_per_tok, dim=-1)
        if self.normalise_top_k:
            weights = weights / weights.sum(-1, keepdim=True)
        weights = weights * DECODER.routed_scaling_factor
        self.routes.append(experts)
        routed = torch.zeros_like(x)
        for token in range(x.shape[0]):
            for slot in range(DECODER.num_experts_per_tok):
                expert = f"{prefix}experts.{int(experts[token, slot])}."
                routed[token] += weights[token, slot] * self._swiglu(x[token : token + 1], expert)[0]
        return routed + self._swiglu(x, prefix + "shared_experts.")


@pytest.fixture(scope="module")
def decoder_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, torch.Tensor]]:
    weights = realistic_weights()
    directory: Path = write_checkpoint(tmp_path_factory.mktemp("decoder-parity"), ARCHITECTURE, weights)
    model = load_weights(
        inspect_checkpoint(directory), ARCHITECTURE, device=torch.device("cpu"), dtype=torch.float32
    )
    return model, weights


def prompt_ids() -> torch.Tensor:
    return torch.randint(
        3, DECODER.vocab_size, (PREFILL_TOKENS,), generator=torch.Generator().manual_seed(SEED)
    )


def test_layer_kinds_follow_first_k_dense_replace(decoder_setup: tuple[Any, dict[str, torch.Tensor]]) -> None:
    model, _ = decoder_setup
    layers = model.model.language_model.layers
    assert not hasattr(layers[0].mlp, "gate")
    assert layers[1].mlp.gate.weight.shape == (64, DECODER.hidden_size)
    assert layers[1].mlp.experts.gate_up_proj.shape == (64, 2 * 896, DECODER.hidden_size)


def test_prefill_logits_and_routing_match_the_reference(
    decoder_setup: tuple[Any, dict[str, torch.Tensor]],
) -> None:
    model, weights = decoder_setup
    ids = prompt_ids()
    routing: dict[str, torch.Tensor] = {}

    def capture(module: Any, inputs: Any, output: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        routing["weights"], routing["experts"] = output[1], output[2]

    hook = model.model.language_model.layers[1].mlp.gate.register_forward_hook(capture)
    try:
        with torch.inference_mode():
            served = model(
                input_ids=ids[None], attention_mask=torch.ones(1, len(ids), dtype=torch.long)
            ).logits[0]
    finally:
        hook.remove()
    reference = ReferenceDecoder(weights)
    with torch.inference_mode():
        expected = reference.logits(ids)

    scale = expected.abs().max()
    assert (served - expected).abs().max() <= 1e-4 * scale
    assert torch.equal(served.argmax(-1), expected.argmax(-1))
    assert torch.equal(routing["experts"].sort(-1).values, reference.routes[0].sort(-1).values)
    sums = routing["weights"].sum(-1)
    assert (sums < 0.999).all()  # top-k weights are softmax probabilities, not renormalised

    renormalised = ReferenceDecoder(weights, normalise_top_k=True)
    with torch.inference_mode():
        assert (served - renormalised.logits(ids)).abs().max() > 1e-2 * scale  # the check can tell


def test_greedy_generation_matches_the_reference(decoder_setup: tuple[Any, dict[str, torch.Tensor]]) -> None:
    model, weights = decoder_setup
    ids = prompt_ids()[:16]
    with torch.inference_mode():
        generated = model.generate(
            input_ids=ids[None],
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
        )[0, len(ids) :]
        reference = ReferenceDecoder(weights)
        sequence = ids
        for _ in range(NEW_TOKENS):
            logits = reference.logits(sequence)[-1]
            logits[1] = float("-inf")  # EOS, as min_new_tokens suppresses it on the served side
            sequence = torch.cat([sequence, logits.argmax().view(1)])
    assert generated.tolist() == sequence[len(ids) :].tolist()
