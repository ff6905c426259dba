"""Telling a poisoned device apart from an error that concerns one page only."""

from __future__ import annotations

import torch

# After any of these the CUDA context is unusable until the process ends.
FATAL_DEVICE_ERROR_MARKERS = (
    "device-side assert",
    "illegal memory access",
    "unspecified launch failure",
    "misaligned address",
    "illegal instruction",
    "uncorrectable ecc error",
    "cuda error: unknown error",
    "cublas_status_execution_failed",
    "cudnn_status_execution_failed",
)


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError)


def is_fatal_device_error(error: BaseException) -> bool:
    if is_out_of_memory(error) or not isinstance(error, RuntimeError):
        return False
    message = str(error).lower()
    return any(marker in message for marker in FATAL_DEVICE_ERROR_MARKERS)
