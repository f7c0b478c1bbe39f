"""The memory of a config's fine-tuning stages on each GPU, which `helox plan` prints below the
pretraining plan of the config as written: every weight training, or with `sft.lora` or
`dpo.lora` LoRA adapters on the frozen model (helox.model.step_cost counts what each holds)."""

from __future__ import annotations

from typing import Any

from helox.common.config_files import section_from_dict
from helox.model.step_cost import DEVICES, GIB, MemoryEstimate, adapter_parameters, estimate_memory
from helox.pipeline.config import FINE_TUNING_STAGES, SECTIONS, resolve_config
from helox.pipeline.plan import USABLE_MEMORY, config_model


def tuning_memory(config: dict[str, Any], stage: str) -> MemoryEstimate:
    """What one step of fine-tuning `stage` holds on each of its GPUs, for the config's own
    model; a DPO step's rows hold both answers of its `batch_size` pairs."""
    complete = resolve_config(config)
    section = section_from_dict(SECTIONS[stage], complete[stage], stage)
    rows = section.batch_size * (2 if stage == "dpo" else 1)
    return estimate_memory(
        config_model(complete),
        section.seq_len,
        rows,
        section.optimizer,
        section.processes,
        section.fsdp,
        section.lora,
    )


def format_tuning_memory(config: dict[str, Any], device: str) -> list[str]:
    """One line for each fine-tuning stage: its memory on each GPU, what trains, and whether it
    fits `device` with the stage's gradient checkpointing."""
    complete = resolve_config(config)
    usable = USABLE_MEMORY * DEVICES[device].memory_gib * GIB
    lines = []
    for stage in FINE_TUNING_STAGES:
        section = section_from_dict(SECTIONS[stage], complete[stage], stage)
        memory, lora = tuning_memory(config, stage), section.lora
        trains = "every weight trains"
        if lora is not None:
            adapters = adapter_parameters(config_model(complete), lora)
            trains = f"LoRA rank {lora.rank} on {', '.join(lora.targets)}: {adapters:,} trained"
        fits = memory.total(section.gradient_checkpointing) <= usable
        chosen = "on" if section.gradient_checkpointing else "off"
        lines.append(
            f"{stage + ' memory':<15} {memory.breakdown()} ({trains}; checkpointing {chosen}: "
            f"{'fits' if fits else 'does NOT fit'})"
        )
    return lines
