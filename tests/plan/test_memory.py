"""Memory per device: activation counts equal what autograd really keeps; weights/grads/optimizer by hand."""

from __future__ import annotations

import pytest
import torch

from langadapt.plan.architecture import LINEAR_MODULES, SHIPPED, Architecture, find_architecture
from langadapt.plan.memory import (
    AUTOCAST,
    BF16,
    Mode,
    Training,
    memory_row,
    memory_table,
    saved_activation_bytes,
)

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

SEQUENCE, BATCH = 64, 2


def saved_bytes(model: torch.nn.Module, *, bf16: bool, vocab: int) -> int:
    """Bytes of the activations autograd saves in one training forward pass: every saved tensor's storage
    once, leaving out the parameters and the bf16 copies autocast makes of them (those are weights)."""
    params = list(model.parameters())
    param_storages = {p.untyped_storage().data_ptr() for p in params}
    casts = [p.detach().to(torch.bfloat16) for p in params if p.dim() == 2]
    seen: dict[int, int] = {}

    def is_weight_copy(t: torch.Tensor) -> bool:
        return t.dtype == torch.bfloat16 and t.dim() == 2 and any(
            c.shape == t.shape and torch.equal(c, t) for cast in casts for c in (cast, cast.t()))

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in param_storages and ptr not in seen:
            seen[ptr] = 0 if is_weight_copy(t) else t.untyped_storage().nbytes()
        return t

    ids = torch.randint(0, vocab, (BATCH, SEQUENCE), generator=torch.Generator().manual_seed(0))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=not bf16):
        loss = model(input_ids=ids, labels=ids).loss
    return sum(seen.values()) - loss.untyped_storage().nbytes()  # the scalar loss itself is no activation


def build(kind: str, mode: Mode, *, bf16: bool, checkpointing: bool) -> tuple[torch.nn.Module, Architecture]:
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    model_type = "qwen2" if kind == "qwen2" else "llama"
    config = AutoConfig.for_model(model_type, hidden_size=128, intermediate_size=344, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, vocab_size=300,
                                  max_position_embeddings=256, tie_word_embeddings=False, attn_implementation="sdpa")
    model = AutoModelForCausalLM.from_config(config)
    model.config.use_cache = False
    if mode == "embeddings":
        model.requires_grad_(False)
        model.get_input_embeddings().requires_grad_(True)
        model.lm_head.requires_grad_(True)
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, target_modules="all-linear",
                                                 modules_to_save=["embed_tokens", "lm_head"], task_type="CAUSAL_LM"))
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    if bf16:
        model.to(torch.bfloat16)
    arch = Architecture.from_config(config.to_dict(), "test")
    return model, arch


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointed"])
@pytest.mark.parametrize("bf16", [False, True], ids=["autocast", "bf16-weights"])
@pytest.mark.parametrize(("kind", "mode"), [("llama", "full"), ("qwen2", "full"), ("llama", "embeddings"),
                                            ("llama", "lora")])
def test_saved_activations_equal_the_formula(kind: str, mode: Mode, bf16: bool, checkpointing: bool) -> None:
    model, arch = build(kind, mode, bf16=bf16, checkpointing=checkpointing)
    training = Training(arch, mode, sequence=SEQUENCE, micro_batch=BATCH, train_embeddings=True,
                        lora_r=4 if mode == "lora" else 0, lora_modules=LINEAR_MODULES if mode == "lora" else (),
                        lora_layers=arch.layers if mode == "lora" else 0)
    expected = saved_activation_bytes(training, BF16 if bf16 else AUTOCAST, checkpointed=checkpointing)
    assert saved_bytes(model, bf16=bf16, vocab=arch.vocab) == expected


LLAMA3 = find_architecture("meta-llama/Meta-Llama-3-8B")
N = 8_030_261_248
MATMUL = 32 * 218_103_808 + 128_256 * 4096  # body linears + head = 7,504,658,432


def test_llama3_8b_full_weights_grads_optimizer_per_zero_stage_by_hand() -> None:
    assert (LLAMA3.parameters, LLAMA3.matmul_parameters) == (N, MATMUL)
    training = Training(LLAMA3, "full", sequence=4096, micro_batch=1)
    rows = {row.scheme: row for row in memory_table(training, 8, "zero3")}
    # One GPU / DDP, HF Trainer autocast: fp32 weights + bf16 copies of matmul weights, fp32 grads, AdamW fp32.
    assert (rows["none"].weights, rows["none"].gradients, rows["none"].optimizer) == (
        4 * N + 2 * MATMUL, 4 * N, 8 * N)
    # DeepSpeed bf16 (ZeRO paper, K = 12): 2 + 2 + 12 bytes per parameter, sharded stage by stage over 8 GPUs.
    assert (rows["zero1"].weights, rows["zero1"].gradients, rows["zero1"].optimizer) == (2 * N, 2 * N, 12 * N // 8)
    assert (rows["zero2"].weights, rows["zero2"].gradients, rows["zero2"].optimizer) == (2 * N, 2 * N // 8, 12 * N // 8)
    working = 2 * (2 * 128_256 * 4096 + 2 * 218_112_000)  # bf16 embeddings + head + two layers, gathered
    assert (rows["zero3"].weights, rows["zero3"].gradients, rows["zero3"].optimizer) == (
        2 * N // 8 + working, 2 * N // 8, 12 * N // 8)
    assert rows["zero3"].weights == 4_981_359_616 and rows["zero3"].configured
    assert (rows["fsdp"].weights, rows["fsdp"].gradients, rows["fsdp"].optimizer) == (
        4 * N // 8 + working, 4 * N // 8, 8 * N // 8)


def test_embeddings_only_and_lora_count_only_what_trains() -> None:
    embeddings = Training(LLAMA3, "embeddings", sequence=1024, micro_batch=4)
    assert embeddings.trained_parameters == 2 * 128_256 * 4096  # untied: input embeddings + head
    row = memory_row(embeddings, "zero2", 8)
    assert (row.weights, row.gradients, row.optimizer) == (2 * N, 2 * 1_050_673_152 // 8, 12 * 1_050_673_152 // 8)
    lora = Training(LLAMA3, "lora", sequence=1024, micro_batch=1, train_embeddings=False, lora_r=16,
                    lora_modules=LINEAR_MODULES, lora_layers=32)
    per_layer = 16 * ((4096 + 4096) * 2 + (4096 + 1024) * 2 + 3 * (4096 + 14336))  # q,o + k,v + gate,up,down
    assert lora.trained_parameters == 32 * per_layer == 41_943_040
    with_embeddings = Training(LLAMA3, "lora", sequence=1024, micro_batch=1, train_embeddings=True, lora_r=16,
                               lora_modules=LINEAR_MODULES, lora_layers=2)
    assert with_embeddings.trained_parameters == 2 * per_layer + 1_050_673_152
    # PEFT's modules_to_save keeps the original embeddings beside the trained copy.
    assert with_embeddings.weight_parameters == N + 2 * per_layer + 1_050_673_152


def test_tied_embeddings_train_one_matrix() -> None:
    tied = find_architecture("x", model_config=SHIPPED / "qwen2.5-0.5b.json")
    assert Training(tied, "embeddings", sequence=8, micro_batch=1).trained_parameters == 151_936 * 896


def test_dpo_full_holds_a_reference_copy_and_activations_scale_with_tokens() -> None:
    policy = Training(LLAMA3, "full", sequence=2048, micro_batch=2)
    dpo = Training(LLAMA3, "full", sequence=2048, micro_batch=2, reference_copy=True)
    assert memory_row(dpo, "none", 1).weights == 2 * memory_row(policy, "none", 1).weights
    one = Training(LLAMA3, "full", sequence=2048, micro_batch=1)
    rotary = 2 * 2048 * 128 * 4
    assert saved_activation_bytes(policy, AUTOCAST, checkpointed=False) - rotary == 2 * (
        saved_activation_bytes(one, AUTOCAST, checkpointed=False) - rotary)
