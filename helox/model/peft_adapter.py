"""A LoRA adapter alone, in the format of Hugging Face PEFT's `save_pretrained`.

`adapter_config.json` holds PEFT's `LoraConfig` keys and `adapter_model.safetensors` the
factors under the keys `get_peft_model_state_dict` gives: `base_model.model.` and the
parameter's name in the transformers model, without the adapter's name (`default`). Helox's
parameter names are the transformers family's own (helox.model.folder), so
`PeftModel.from_pretrained(base, folder)` puts the adapter onto the base model as it is.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file
from torch import Tensor

from helox.common.io import fsync_dir, fsync_file, write_json
from helox.model.lora_config import LoRAConfig

ADAPTER_DIR = "adapter"  # beside the merged weights in a stage's final/ folder
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."


def peft_config(lora: LoRAConfig, base: str | None) -> dict:
    """PEFT's `adapter_config.json` for adapters `lora` on the model folder `base`."""
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": sorted(lora.targets),
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "modules_to_save": None,
        "inference_mode": True,
    }


def write_adapter(
    folder: Path, factors: dict[str, Tensor], lora: LoRAConfig, base: str | None
) -> None:
    """Write the adapter `factors` (Helox's names) into a new `folder`, fsynced."""
    folder.mkdir()
    tensors = {PEFT_PREFIX + name: tensor.contiguous() for name, tensor in factors.items()}
    save_file(tensors, folder / ADAPTER_WEIGHTS_FILE, metadata={"format": "pt"})
    write_json(folder / ADAPTER_CONFIG_FILE, peft_config(lora, base))
    for path in folder.iterdir():
        fsync_file(path)
    fsync_dir(folder)
