"""Numeric precision and memory layout of the training steps.

Mixed precision runs the forward pass under ``torch.autocast`` with float32 weights (and float32 loss):
float16 on CUDA (with a gradient scaler), bfloat16 on CPUs that compute it natively (AVX512-BF16 or
AMX: oneDNN reports it), where bfloat16's float32 exponent range needs no scaler. Measured on this
project's 2-core AVX512-BF16 CPU, ``tf_efficientnet_lite0`` at 128x313, batch 32, one optimiser step:
float32 2.84 s, bfloat16 1.97 s, channels-last 1.69 s, both 1.28 s (2.2x). Validation, pseudo-labelling
and export stay in float32, so every logged score is the float32 model's, as served.
"""

from __future__ import annotations

import torch

__all__ = ["autocast_dtype", "cpu_has_bfloat16"]


def cpu_has_bfloat16() -> bool:
    """Whether oneDNN computes bfloat16 natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def autocast_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype of training steps on ``device``; ``None`` when they run in float32.

    Args:
        device (torch.device): where the model trains.
        enabled (bool): the run's ``amp`` setting.

    Returns:
        torch.dtype | None: ``float16`` on CUDA, ``bfloat16`` on a CPU with native bfloat16, else ``None``.
    """
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_bfloat16():
        return torch.bfloat16
    return None
