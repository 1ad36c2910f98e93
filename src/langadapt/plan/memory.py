"""GPU memory of one training stage, per device, under each way of sharding it.

Weights, gradients and optimizer state follow the ZeRO paper's accounting (Rajbhandari et al. 2020,
§3.1 and §5): bf16 weights and gradients plus an fp32 master copy and AdamW's two fp32 moments (2+2+12 bytes
per trained parameter) under DeepSpeed; the HF Trainer's own path (one GPU, DDP, FSDP) keeps fp32 weights and
gradients and autocasts to bf16, which caches a bf16 copy of every matmul weight during the step (4+4+8, plus
2 per matmul weight). ZeRO-1 shards the optimizer state (master included), ZeRO-2 the gradients too,
ZeRO-3 and FSDP the weights too; these last two also hold a gathered bf16 working set (the embeddings, the
head and two decoder layers).

Activations count the tensors autograd keeps for the backward pass, the way Korthikanti et al. 2022
("Reducing Activation Recomputation in Large Transformer Models", §4) count them, for transformers' Llama /
Mistral / Qwen2 code under sdpa or flash attention (no s² score matrix) — the coefficients were measured
with torch's saved-tensor hooks and are checked that way in tests/plan/test_memory.py. Full activation
checkpointing keeps each layer's input plus one recomputed layer. Not counted: allocator fragmentation, CUDA
context (~0.5-1 GB), communication buckets, transient activation gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from langadapt.plan.architecture import Architecture

Mode = Literal["full", "embeddings", "lora"]
Scheme = Literal["none", "zero1", "zero2", "zero3", "fsdp"]
SCHEMES: tuple[Scheme, ...] = ("none", "zero1", "zero2", "zero3", "fsdp")
SCHEME_LABELS = {"none": "none / DDP", "zero1": "ZeRO-1", "zero2": "ZeRO-2", "zero3": "ZeRO-3", "fsdp": "FSDP"}


@dataclass(frozen=True)
class Layout:
    """Bytes per parameter of a precision scheme, and the activation coefficients measured under it."""

    name: str
    weight: int  # every parameter
    grad: int  # trained parameters
    master: int  # fp32 master copy of trained parameters (bf16 weights only)
    cast_copy: int  # autocast's bf16 copy of each matmul weight
    act_body: tuple[int, int]  # (per hidden unit, per MLP unit) of a trained decoder layer, q_dim = hidden
    act_residual: int  # bytes per hidden unit of a layer's input (what checkpointing keeps)
    act_adapter: int  # LoRA: bytes per input feature of an adapted linear
    act_scale: int = 1  # fp32 keeps every activation at twice the bf16 size (not measured)


AUTOCAST = Layout("fp32 weights + bf16 autocast", weight=4, grad=4, master=0, cast_copy=2, act_body=(30, 8),
                  act_residual=4, act_adapter=6)
BF16 = Layout("bf16 weights + fp32 master", weight=2, grad=2, master=4, cast_copy=0, act_body=(20, 8),
              act_residual=2, act_adapter=4)
FP32 = Layout("fp32", weight=4, grad=4, master=0, cast_copy=0, act_body=(30, 8), act_residual=4, act_adapter=6,
              act_scale=2)


@dataclass(frozen=True)
class Training:
    """What a training stage trains, on what batches: everything the memory and FLOP counts need."""

    arch: Architecture
    mode: Mode
    sequence: int  # tokens per sequence
    micro_batch: int  # sequences per device per micro-step (DPO: chosen + rejected)
    train_embeddings: bool = True  # embeddings and head in full (embeddings mode; LoRA's modules_to_save)
    lora_r: int = 0
    lora_modules: tuple[str, ...] = ()
    lora_layers: int = 0  # decoder layers that carry adapters
    optimizer_state: int = 8  # bytes per trained parameter: AdamW's two fp32 moments (8-bit: 2)
    reference_copy: bool = False  # DPO with full weights: a frozen copy of the policy
    precision: str = "bf16"

    @property
    def lora_parameters(self) -> int:
        shapes = self.arch.linear_shapes()
        return self.lora_layers * sum(self.lora_r * (shapes[m][0] + shapes[m][1]) for m in self.lora_modules)

    @property
    def trained_parameters(self) -> int:
        embeddings = self.arch.embedding_params if self.train_embeddings else 0
        if self.mode == "full":
            return self.arch.parameters
        if self.mode == "embeddings":
            return self.arch.embedding_params
        return self.lora_parameters + embeddings

    @property
    def weight_parameters(self) -> int:
        """Parameters held in memory: the model, its adapters, PEFT's trained copies of the embeddings
        (modules_to_save keeps the original beside the copy) and DPO's reference copy."""
        held = self.arch.parameters
        if self.mode == "lora":
            held += self.lora_parameters + (self.arch.embedding_params if self.train_embeddings else 0)
        return held * (2 if self.reference_copy else 1)


@dataclass
class MemoryRow:
    """Per-device bytes under one sharding scheme."""

    scheme: Scheme
    devices: int
    layout: str
    weights: int
    gradients: int
    optimizer: int
    activations: int
    activations_checkpointed: int
    configured: bool = False
    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    @property
    def total_checkpointed(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations_checkpointed

    def to_dict(self) -> dict[str, object]:
        return {"scheme": self.scheme, "devices": self.devices, "layout": self.layout, "weights": self.weights,
                "gradients": self.gradients, "optimizer": self.optimizer, "activations": self.activations,
                "activations_checkpointed": self.activations_checkpointed, "total": self.total,
                "total_checkpointed": self.total_checkpointed, "configured": self.configured}


def layout_for(scheme: Scheme, precision: str) -> Layout:
    """DeepSpeed keeps bf16 weights and an fp32 master copy; the HF Trainer path autocasts fp32 weights."""
    if precision == "fp32":
        return FP32
    return BF16 if scheme.startswith("zero") else AUTOCAST


def memory_row(training: Training, scheme: Scheme, devices: int) -> MemoryRow:
    arch, layout = training.arch, layout_for(scheme, training.precision)
    trained = training.trained_parameters
    shard = {name: devices if _sharded(scheme, name) else 1 for name in ("optimizer", "gradients", "weights")}
    weights = training.weight_parameters * layout.weight // shard["weights"]
    if scheme in ("zero3", "fsdp"):
        working = 2 * (arch.embedding_params + 2 * arch.layer_params)
    else:
        working = layout.cast_copy * arch.matmul_parameters * (2 if training.reference_copy else 1)
    return MemoryRow(
        scheme=scheme, devices=devices, layout=layout.name, weights=weights + working,
        gradients=trained * layout.grad // shard["gradients"],
        optimizer=trained * (layout.master + training.optimizer_state) // shard["optimizer"],
        activations=activation_bytes(training, layout, checkpointed=False),
        activations_checkpointed=activation_bytes(training, layout, checkpointed=True),
        parts={"weights_sharded": weights, "working_copy": working},
    )


def _sharded(scheme: Scheme, what: str) -> bool:
    level = {"none": 0, "zero1": 1, "zero2": 2, "zero3": 3, "fsdp": 3}[scheme]
    return level >= {"optimizer": 1, "gradients": 2, "weights": 3}[what]


def layer_activation_bytes(training: Training, layout: Layout) -> int:
    """Bytes autograd keeps for one decoder layer, per token of the micro-batch."""
    arch = training.arch
    h, f = arch.hidden, arch.intermediate
    attention = 4 * arch.kv_dim + 4 * arch.heads + 8  # K and V after rotary, softmax log-sum-exp, norm scales
    if training.mode == "full":
        per_hidden, per_mlp = layout.act_body
        body = per_hidden * h + per_mlp * f
    else:  # frozen linears keep no inputs; norms, attention and the SwiGLU product still keep theirs
        body = 12 * h + 6 * f
    return body + attention


def activation_bytes(training: Training, layout: Layout, *, checkpointed: bool) -> int:
    """Peak activation bytes per device: what autograd keeps, the layer being recomputed under checkpointing,
    and the loss's transient logits."""
    tokens = training.sequence * training.micro_batch
    transient = 6 * training.arch.vocab * tokens * layout.act_scale  # bf16 logits + their fp32 copy in the loss
    saved = saved_activation_bytes(training, layout, checkpointed=checkpointed)
    return saved + (recomputed_layer_bytes(training, layout) if checkpointed else 0) + transient


def saved_activation_bytes(training: Training, layout: Layout, *, checkpointed: bool) -> int:
    """Bytes of the tensors the forward pass leaves for the backward pass (what saved-tensor hooks see);
    with checkpointing only each layer's input."""
    arch = training.arch
    if checkpointed:
        per_token = arch.layers * layout.act_residual * arch.hidden
    else:
        per_token = arch.layers * layer_activation_bytes(training, layout)
        per_token += training.lora_layers * adapter_activation_bytes(training, layout)
    per_token += head_activation_bytes(training, layout)
    tokens = training.sequence * training.micro_batch
    return (per_token * tokens + (0 if checkpointed else rotary_bytes(training, layout))) * layout.act_scale


def recomputed_layer_bytes(training: Training, layout: Layout) -> int:
    """Under checkpointing, one layer's activations exist again while its backward pass runs."""
    per_token = layer_activation_bytes(training, layout) + adapter_activation_bytes(training, layout)
    tokens = training.sequence * training.micro_batch
    return (per_token * tokens + rotary_bytes(training, layout)) * layout.act_scale


def adapter_activation_bytes(training: Training, layout: Layout) -> int:
    """LoRA, per token of one adapted layer: each adapter's (dropped-out, cast) input and its rank-r output."""
    if training.mode != "lora":
        return 0
    shapes = training.arch.linear_shapes()
    return sum(layout.act_adapter * shapes[m][0] + 2 * training.lora_r for m in training.lora_modules)


def head_activation_bytes(training: Training, layout: Layout) -> int:
    """Per token: the final norm and head inputs, the fp32 log-softmax kept for the backward pass
    (transformers' ForCausalLMLoss upcasts the logits), token ids, labels and norm scales."""
    h = training.arch.hidden
    if training.mode == "full":
        norm_and_head = (8 if layout is BF16 else 10) * h
    else:
        norm_and_head = (6 if training.train_embeddings else 4) * h
    return norm_and_head + 4 * training.arch.vocab + 20


def rotary_bytes(training: Training, layout: Layout) -> int:
    """The rotary cos/sin tables (shared by every layer; fp32 under autocast)."""
    return 2 * training.sequence * training.arch.head_dim * (2 if layout is BF16 else 4)


def memory_table(training: Training, devices: int, configured: Scheme) -> list[MemoryRow]:
    """Every scheme on `devices` GPUs (only 'none' on one GPU), the configured one marked."""
    schemes = SCHEMES if devices > 1 else ("none",)
    rows = [memory_row(training, scheme, devices) for scheme in schemes]
    for row in rows:
        row.configured = row.scheme == configured
    return rows
