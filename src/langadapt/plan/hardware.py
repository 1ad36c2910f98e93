"""Accelerators a plan can be priced on: peak dense bf16 tensor throughput and memory, per GPU.

Figures are the vendors' datasheet numbers for dense bf16 (the datasheets' headline figures assume 2:4
sparsity; those are halved here) and the memory the datasheet names, in GB (10^9 bytes).
"""

from __future__ import annotations

from dataclasses import dataclass

from langadapt.errors import LangadaptError


@dataclass(frozen=True)
class Gpu:
    name: str
    bf16_tflops: float  # dense, no sparsity
    memory_gb: float
    source: str


GPUS = {
    gpu.name.lower(): gpu
    for gpu in (
        Gpu("H100", 989.0, 80, "NVIDIA H100 datasheet, SXM: 1,979 TFLOPS bf16 with sparsity"),
        Gpu("H100-PCIe", 756.0, 80, "NVIDIA H100 datasheet, PCIe: 1,513 TFLOPS bf16 with sparsity"),
        Gpu("H200", 989.0, 141, "NVIDIA H200 datasheet, SXM: 1,979 TFLOPS bf16 with sparsity, 141 GB HBM3e"),
        Gpu("B200", 2250.0, 180, "NVIDIA HGX B200 datasheet: 4.5 PFLOPS fp16/bf16 per GPU with sparsity"),
        Gpu("A100", 312.0, 80, "NVIDIA A100 datasheet: 312 TFLOPS bf16 dense (624 with sparsity), 80 GB"),
        Gpu("A100-40GB", 312.0, 40, "NVIDIA A100 datasheet: 312 TFLOPS bf16 dense, 40 GB"),
        Gpu("L40S", 362.05, 48, "NVIDIA L40S datasheet: 733 TFLOPS bf16 with sparsity, 48 GB"),
        Gpu("A10", 125.0, 24, "NVIDIA A10 datasheet: 250 TFLOPS bf16 with sparsity, 24 GB"),
        Gpu("L4", 121.0, 24, "NVIDIA L4 datasheet: 242 TFLOPS bf16 with sparsity, 24 GB"),
        Gpu("MI300X", 1307.4, 192, "AMD Instinct MI300X datasheet: 1,307.4 TFLOPS bf16 dense, 192 GB"),
    )
}


def find_gpu(name: str) -> Gpu:
    try:
        return GPUS[name.lower()]
    except KeyError:
        known = ", ".join(gpu.name for gpu in GPUS.values())
        raise LangadaptError(f"unknown GPU '{name}' — choose one of: {known}") from None
