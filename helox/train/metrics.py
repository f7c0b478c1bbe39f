"""Numbers the loop reports beside the loss: model FLOPs utilisation and bits per byte.

MFU is achieved training FLOP/s (`HeloxLM.flops_per_token` times tokens per second)
over the device's peak: on CUDA the dense bf16 tensor-core peak of the GPU model, on
CPU the fp32 matmul throughput measured once in this process.
Bits per byte divide the validation loss by the UTF-8 bytes the target tokens stand
for (helox.tokens.interface.Tokenizer.token_bytes), so models with different vocabularies
compare.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

import torch
from torch import Tensor

from helox.tokens.vocab import TokenizerSource, load_tokenizer

# Dense bf16 peak FLOP/s per GPU from the vendors' data sheets, first match by name wins.
BF16_PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
)
PROBE_SIZE = 1024
PROBE_SECONDS = 0.25


def measure_matmul_peak(
    seconds: float = PROBE_SECONDS,
    size: int = PROBE_SIZE,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """The best fp32 FLOP/s of repeated `size`-square CPU matmuls over about `seconds`,
    timed by `clock` (`time.process_time` gives FLOPs per CPU-second)."""
    own = torch.Generator().manual_seed(0)  # leaves the global generator to training
    a, b = torch.randn(size, size, generator=own), torch.randn(size, size, generator=own)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)
    best, deadline = math.inf, time.perf_counter() + seconds
    while time.perf_counter() < deadline or best == math.inf:
        started = clock()
        torch.mm(a, b, out=out)
        best = min(best, clock() - started)
    return 2 * size**3 / best


@functools.cache
def _cpu_peak(threads: int) -> float:
    return measure_matmul_peak()


def peak_flops(device: torch.device) -> float | None:
    """Peak FLOP/s of one `device` for MFU, or None where it is unknown."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return next((flops for key, flops in BF16_PEAK_FLOPS if key in name), None)
    if device.type == "cpu":
        return _cpu_peak(torch.get_num_threads())
    return None


def token_byte_lengths(tokenizer: TokenizerSource) -> Tensor:
    """UTF-8 bytes each token id stands for: 1 for a byte piece, 0 for a special token, else
    the bytes of its text (a SentencePiece space mark counting as a space)."""
    return torch.tensor(load_tokenizer(tokenizer).token_bytes(), dtype=torch.int64)


def bits_per_byte(total_nats: float, total_bytes: int) -> float:
    """Summed cross-entropy in nats → bits per byte of the text it scored."""
    return total_nats / math.log(2) / total_bytes
