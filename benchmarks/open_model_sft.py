"""SFT of an open model's shape on one device: Helox's SFT stage against a plain transformers
training step on the same checkpoint, tokens per second and peak memory.

    python benchmarks/open_model_sft.py --tokenizer DIR [--shape 1b|tiny] [--steps 20]
        [--seq-len 1024] [--batch-size 8] [--device cuda|cpu] [--json PATH]

Saves a random checkpoint in Llama 3.2 1B's shape (16 layers × 2048, 32 query heads over 8
key-value heads, MLP 8192, vocabulary 128,256, tied embeddings, RoPE θ 500,000 with `llama3`
scaling) with the tokenizer files of DIR (Llama 3.2's: tests/real_tokenizers.py fetches
them), imports it (`helox.model.import_hf`), and runs `helox.tune.sft.run_sft` on the
standard-library instruction pairs for `--steps` steps: AdamW, packed rows of `--seq-len`,
bf16 autocast on CUDA, no torch.compile. The reference loads the same checkpoint with
transformers and takes the same number of AdamW steps on rows of the same shape. Both count
every position of a row, and time the steps after the first; peak memory is CUDA's
allocated high-water mark (on the CPU, the process's resident one, reset before each run).
The last line is the ratios, Helox over transformers.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from lora_memory import reset_peak_resident, resident_mib
from transformers import AutoModelForCausalLM, LlamaConfig

from helox.data.stdlib import derive_sft_pairs, gather_stdlib
from helox.model.import_hf import import_hf_folder
from helox.train.tracking import TrackingConfig
from helox.tune.config import SFTConfig
from helox.tune.sft import run_sft

LLAMA_32_1B = {
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
}
TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
}
ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500_000.0,
    "factor": 32.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}
LEARNING_RATE = 1e-5
SEED = 0


def save_source(folder: Path, shape: dict, tokenizer: Path) -> None:
    """A random checkpoint of `shape` (Llama 3.2's vocabulary and RoPE) with its tokenizer."""
    config = LlamaConfig(
        vocab_size=128_256,
        max_position_embeddings=131_072,
        rope_parameters=ROPE,
        tie_word_embeddings=True,
        bos_token_id=128_000,
        eos_token_id=128_009,
        **shape,
    )
    torch.manual_seed(SEED)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    for path in tokenizer.iterdir():
        shutil.copyfile(path, folder / path.name)


def peak_memory_gib(device: torch.device) -> float:
    """The peak allocated (CUDA) or resident (CPU) memory since `start_measuring`, in GiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resident_mib("VmHWM") / 1024


def start_measuring(device: torch.device) -> None:
    """Start the peak memory again from what is held now."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        reset_peak_resident()


def helox_sft(source: Path, work: Path, args: argparse.Namespace) -> dict[str, float]:
    """Tokens per second of the SFT stage (its metrics.json) and the peak memory of the run."""
    gather_stdlib(work / "raw", 2_000_000)
    derive_sft_pairs(work / "sft.jsonl", 4000, 2000, SEED, root=work / "raw")
    imported = import_hf_folder(source, work / "imported")
    config = SFTConfig(
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        learning_rate=LEARNING_RATE,
        total_steps=args.steps,
        warmup_steps=1,
        eval_steps=args.steps,
        eval_batches=1,
        save_steps=args.steps,
        save_total_limit=1,
        log_steps=args.steps,
        device=args.device,
        compile=False,
    )
    start_measuring(torch.device(args.device))
    metrics = run_sft(
        imported, work / "sft.jsonl", work / "sft", config, SEED, TrackingConfig(enabled=False)
    )
    return {
        "tokens_per_second": metrics["tokens_per_second"],
        "peak_memory_gib": peak_memory_gib(torch.device(args.device)),
        "parameters": metrics["parameters"],
    }


def transformers_steps(source: Path, args: argparse.Namespace) -> dict[str, float]:
    """Tokens per second of plain AdamW steps on the transformers model, rows of random ids."""
    device = torch.device(args.device)
    start_measuring(device)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(SEED)
    shape = (args.batch_size, args.seq_len)
    rows = torch.randint(0, model.config.vocab_size, shape, generator=generator).to(device)
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda")
    started = 0.0
    for step in range(args.steps):
        if step == 1:
            synchronize(device)
            started = time.perf_counter()
        with autocast:
            loss = model(input_ids=rows, labels=rows).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    seconds = time.perf_counter() - started
    return {
        "tokens_per_second": rows.numel() * (args.steps - 1) / seconds,
        "peak_memory_gib": peak_memory_gib(device),
    }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", type=Path, required=True, help="Llama 3.2's files")
    parser.add_argument("--shape", choices=("1b", "tiny"), default="1b")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step is not timed")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        source = work / "source"
        save_source(source, LLAMA_32_1B if args.shape == "1b" else TINY, args.tokenizer)
        helox = helox_sft(source, work, args)
        reference = transformers_steps(source, args)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    figures = {"shape": args.shape, "device": name, "helox": helox, "transformers": reference}
    for label, found in (("Helox SFT", helox), ("transformers steps", reference)):
        print(
            f"{label} ({args.shape}, {name}, {args.batch_size} × {args.seq_len}): "
            f"{found['tokens_per_second']:,.0f} tokens/s, peak {found['peak_memory_gib']:.2f} GiB"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    speed = helox["tokens_per_second"] / reference["tokens_per_second"]
    memory = helox["peak_memory_gib"] / reference["peak_memory_gib"]
    print(f"Helox/transformers ({args.shape}): tokens/s {speed:.2f}, peak memory {memory:.2f}")


if __name__ == "__main__":
    main()
