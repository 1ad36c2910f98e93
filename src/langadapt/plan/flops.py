"""Training FLOPs per token of one stage.

Counting follows the PaLM paper's convention (Chowdhery et al. 2022, appendix B): a matmul weight costs 2
FLOPs per token forward, and attention 4·layers·sequence·(heads·head_dim) forward, counted over the full
square as MFU figures are. The backward pass costs twice the forward where every weight trains (6·N·T in
all). Frozen weights still pass activation gradients back (2·N·T) but need no weight gradients, so the
embeddings-only and LoRA modes cost about 4·N·T, plus the weight gradients of what does train: the LM head
(2·vocab·hidden per token; the input embeddings' gradient is a scatter-add, counted as 0) and LoRA's
adapters (6 FLOPs per adapter parameter). Checkpointing recomputes one forward pass; DPO adds the reference
model's forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from langadapt.plan.memory import Training


@dataclass(frozen=True)
class FlopsPerToken:
    model: int  # what the step mathematically needs (the numerator of MFU)
    executed: int  # plus recomputation (gradient checkpointing) and a reference forward pass (DPO)


def flops_per_token(training: Training, *, attention_sequence: int, checkpointed: bool,
                    reference_forward: bool) -> FlopsPerToken:
    arch = training.arch
    dense = arch.matmul_parameters
    adapters = training.lora_parameters if training.mode == "lora" else 0
    attention_forward = 4 * arch.layers * attention_sequence * arch.q_dim
    forward = 2 * (dense + adapters) + attention_forward
    if training.mode == "full":
        model = 3 * forward
    else:
        head = 2 * arch.vocab * arch.hidden if training.train_embeddings else 0
        model = 2 * forward + attention_forward + 2 * adapters + head  # attention: backward = 2 forwards, no weights
    executed = model + (forward if checkpointed else 0) + (2 * dense + attention_forward if reference_forward else 0)
    return FlopsPerToken(model=model, executed=executed)
