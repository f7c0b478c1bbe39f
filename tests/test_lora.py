"""LoRA for SFT and DPO: only the adapters train, the merged folder and the PEFT adapter beside
it, DPO's reference with the adapters off, resume, several processes, and the refusals."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from process_runs import assert_same_losses, in_one_process, resumed_step
from safetensors.torch import load_file
from test_distributed import NPROC, as_if_killed_after, sum_preference, write_sums
from test_import_hf import llama_folder
from tiny_models import seeded_model, tiny_config
from transformers import AutoModelForCausalLM

from helox.common.config_files import ConfigError
from helox.common.io import read_json
from helox.data.stdlib import derive_sft_pairs, gather_stdlib
from helox.model.device import DeviceManager
from helox.model.folder import load_final, save_final
from helox.model.import_hf import import_hf_folder
from helox.model.lora import LoRALinear, apply_lora, merge_adapters
from helox.model.lora_config import LoRAConfig
from helox.model.peft_adapter import PEFT_PREFIX
from helox.pipeline.config import config_errors, resolve_config
from helox.tokens.chat import HeloxChat
from helox.tokens.vocab import load_tokenizer
from helox.train.checkpoint import MODEL_FILE, OPTIMIZER_FILE
from helox.train.loop import Trainer
from helox.train.step_folders import step_dirs
from helox.train.tracking import TrackingConfig
from helox.tune.config import DPOConfig, SFTConfig
from helox.tune.dpo import DPOJob, attach_reference_logps, launch_dpo, run_dpo
from helox.tune.dpo_data import encode_pairs, read_preference_data
from helox.tune.sft import run_sft, tuned_model
from helox.tune.sft_data import SFTBatches, encode_examples, read_instruction_data

SEED = 7
NO_TRACKING = TrackingConfig(enabled=False)
LORA = LoRAConfig(rank=8, alpha=16.0, dropout=0.05)
# A short LoRA SFT run on the CPU: a fifth of the data held out, evaluated at its end.
SFT = SFTConfig(
    seq_len=128,
    batch_size=8,
    learning_rate=3e-2,
    warmup_steps=2,
    total_steps=24,
    eval_steps=24,
    eval_batches=4,
    save_steps=8,
    save_total_limit=3,
    log_steps=8,
    val_fraction=0.2,
    device="cpu",
    compile=False,
    lora=LORA,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def instructions(tmp_path_factory) -> Path:
    """SFT's default data: instruction pairs derived from the standard library."""
    root = tmp_path_factory.mktemp("stdlib")
    gather_stdlib(root / "raw", 1_500_000)
    derive_sft_pairs(root / "sft.jsonl", 300, 500, SEED, root=root / "raw")
    return root / "sft.jsonl"


@pytest.fixture(scope="module")
def base_folder(spm_model, tmp_path_factory) -> Path:
    """A seeded 2 × 64 model saved as pretraining's final folder (a Llama checkpoint)."""
    folder = tmp_path_factory.mktemp("base") / "final"
    config = tiny_config(400, 256)
    save_final(folder, seeded_model(config, SEED), config, spm_model, {"stage": "pretrain"})
    return folder


@pytest.fixture(scope="module")
def lora_sft(base_folder, instructions, tmp_path_factory) -> tuple[Path, dict]:
    """LoRA SFT of the base folder on the standard-library pairs: (final folder, metrics)."""
    output = tmp_path_factory.mktemp("lora_sft") / "final"
    metrics = run_sft(base_folder, instructions, output, SFT, SEED, NO_TRACKING, threads=1)
    return output, metrics


def test_lora_sft_lowers_held_out_response_loss_training_only_the_adapters(lora_sft) -> None:
    _, metrics = lora_sft
    assert metrics["val_loss"] < metrics["base_val_loss"] - 0.1
    assert 0 < metrics["trained_parameters"] < 0.2 * metrics["parameters"]
    per_layer = 8 * (4 * (64 + 64) + 3 * (64 + 192))  # rank × (in + out) of each projection
    assert metrics["trained_parameters"] == 2 * per_layer


def test_frozen_weights_stay_bit_identical_and_checkpoints_hold_only_adapters(
    base_folder, instructions, spm_model, tmp_path
) -> None:
    """Neither gradients nor optimizer state for the frozen base; its tensors unchanged to the
    bit after training; step checkpoints hold the adapters and their moments alone. Under
    `optimizer: muon` the adapters still train with AdamW, and the FLOPs a token counts no
    weight gradient for the frozen weights."""
    config = dataclasses.replace(SFT, total_steps=4, save_steps=4, optimizer="muon")
    prepared = config.prepare_chat(base_folder, base_folder)
    model, _ = tuned_model(base_folder, config, prepared, torch.device("cpu"))
    frozen = {
        name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad
    }
    examples = encode_examples(
        read_instruction_data(instructions).items, prepared.chat, config.seq_len
    )
    batches = SFTBatches(
        examples, config.batch_size, SEED, config.seq_len, pad_id=prepared.tokenizer.pad
    )
    trainer = Trainer(
        model,
        batches,
        lambda: [],
        config,
        DeviceManager("cpu", threads=1),
        tmp_path / "ckpt",
        "lora",
    )
    assert type(trainer.optimizer) is torch.optim.AdamW
    plain, _ = load_final(base_folder)  # frozen weights cost no weight gradient: 4 FLOPs, not 6
    adapters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    expected_flops = plain.flops_per_token(config.seq_len) - 2 * plain.num_parameters()
    assert trainer.flops_per_token == expected_flops + 6 * adapters
    for _ in range(config.total_steps):
        trainer.train_step()
        assert all(model.get_parameter(name).grad is None for name in frozen)
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trained and all(".lora_A." in name or ".lora_B." in name for name in trained)
    assert all(torch.equal(model.get_parameter(name), value) for name, value in frozen.items())
    assert model.get_parameter("model.layers.0.mlp.down_proj.lora_B.weight").abs().sum() > 0
    moments = {id(p) for p in trainer.optimizer.state}
    assert moments == {id(p) for p in model.parameters() if p.requires_grad}
    trainer.save()
    ((_, saved),) = step_dirs(tmp_path / "ckpt")
    assert set(load_file(saved / MODEL_FILE)) == trained
    assert {key.rsplit(".", 1)[0] for key in load_file(saved / OPTIMIZER_FILE)} == trained


def test_merged_folder_is_base_plus_scaled_update_beside_a_peft_adapter(
    lora_sft, base_folder
) -> None:
    """final/ holds W + (alpha / rank) · B · A computed here from the base and the adapter
    file, every other tensor of the base unchanged; final/adapter/ is PEFT's format."""
    final, _ = lora_sft
    merged, base = load_file(final / "model.safetensors"), load_file(base_folder / MODEL_FILE)
    adapter = {
        key.removeprefix(PEFT_PREFIX): value
        for key, value in load_file(final / "adapter" / "adapter_model.safetensors").items()
    }
    assert set(merged) == set(base)
    adapted = 0
    for name, weight in base.items():
        projection = name.removesuffix(".weight")
        if f"{projection}.lora_A.weight" not in adapter:
            assert torch.equal(merged[name], weight), name
            continue
        down, up = adapter[f"{projection}.lora_A.weight"], adapter[f"{projection}.lora_B.weight"]
        expected = weight + LORA.alpha / LORA.rank * up @ down
        assert torch.allclose(merged[name], expected, rtol=0, atol=1e-6), name
        assert not torch.equal(merged[name], weight), name
        adapted += 1
    assert adapted == 2 * 7
    config = read_json(final / "adapter" / "adapter_config.json")
    assert (config["peft_type"], config["task_type"]) == ("LORA", "CAUSAL_LM")
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (8, 16.0, 0.05)
    assert config["target_modules"] == sorted(LORA.targets)
    assert config["base_model_name_or_path"] == str(base_folder.resolve())
    loaded, _ = load_final(final)  # a plain model folder, as chat, eval and transformers read it
    assert not any(isinstance(m, LoRALinear) for m in loaded.modules())


def peft_matches_merged(base: Path, final: Path) -> None:
    """PEFT loads `final/adapter` onto the transformers model of `base` and gives the logits
    of the transformers model of `final`, within 1e-4."""
    tokens = torch.randint(4, 400, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(final).eval()(tokens).logits
        base_model = AutoModelForCausalLM.from_pretrained(base).eval()
        assert not torch.allclose(base_model(tokens).logits, merged, atol=1e-3)
        adapted = PeftModel.from_pretrained(base_model, final / "adapter").eval()
        logits = adapted(tokens).logits
    assert torch.allclose(logits, merged, rtol=0, atol=1e-4)


def test_peft_puts_the_adapter_on_the_base_with_the_merged_logits(lora_sft, base_folder) -> None:
    final, _ = lora_sft
    peft_matches_merged(base_folder, final)


def test_lora_sft_of_a_model_imported_from_hugging_face(instructions, spm_model, tmp_path) -> None:
    """A transformers Llama (GQA, untied head) imported, tuned with adapters on its attention
    only; PEFT puts the adapter on the transformers folder itself."""
    llama_folder(tmp_path / "hf", spm_model, vocab_size=400, max_position_embeddings=256)
    import_hf_folder(tmp_path / "hf", tmp_path / "imported")
    attention = LoRAConfig(rank=4, alpha=8.0, dropout=0.0, targets=["q_proj", "v_proj"])
    config = dataclasses.replace(SFT, total_steps=6, eval_steps=6, save_steps=6, lora=attention)
    output = tmp_path / "sft" / "final"
    metrics = run_sft(
        tmp_path / "imported", instructions, output, config, SEED, NO_TRACKING, threads=1
    )
    assert metrics["val_loss"] < metrics["base_val_loss"]
    assert read_json(output / "adapter" / "adapter_config.json")["target_modules"] == [
        "q_proj",
        "v_proj",
    ]
    peft_matches_merged(tmp_path / "hf", output)


def test_stopped_lora_sft_resumes_to_the_uninterrupted_run(
    base_folder, instructions, tmp_path, caplog
) -> None:
    """Stopped after the checkpoint of step 8 (its final folder and later checkpoints gone),
    a run with packing, gradient checkpointing, accumulation and adapter dropout resumes to
    the losses and merged weights of the run never stopped."""
    config = dataclasses.replace(
        SFT, batch_size=4, gradient_accumulation_steps=2, gradient_checkpointing=True
    )
    output = tmp_path / "sft" / "final"
    whole = run_sft(base_folder, instructions, output, config, SEED, NO_TRACKING, threads=1)
    whole_weights = load_file(output / "model.safetensors")
    as_if_killed_after(output, 8)
    with caplog.at_level(logging.INFO, logger="helox.train.loop"):
        resumed = run_sft(base_folder, instructions, output, config, SEED, NO_TRACKING, threads=1)
    assert resumed_step(caplog.text) == 8
    assert resumed["loss_history"] == whole["loss_history"]
    assert resumed["val_loss"] == whole["val_loss"]
    for name, value in load_file(output / "model.safetensors").items():
        assert torch.equal(value, whole_weights[name]), name


@pytest.fixture
def preference_pairs(tmp_path) -> Path:
    """Arithmetic questions with the right sum chosen over a wrong one, as DPO's JSONL."""
    return write_sums(tmp_path / "pairs.jsonl", sum_preference, 48, 5, 17)


def test_dpo_reference_is_the_sft_model_with_the_adapters_off(
    base_folder, preference_pairs, spm_model
) -> None:
    """The reference log-probabilities of a model whose adapters are not zero equal those of
    the plain folder, to the bit."""
    items, processor = read_preference_data(preference_pairs).items[:12], load_tokenizer(spm_model)
    cpu = DeviceManager("cpu", threads=1)

    def reference_logps(model: torch.nn.Module) -> list[tuple[float, float]]:
        pairs = encode_pairs(items, HeloxChat(processor), 64)
        attach_reference_logps(model, pairs, 4, cpu.device, cpu.autocast("auto"), processor.pad)
        return [pair.reference for pair in pairs]

    plain, _ = load_final(base_folder)
    config = DPOConfig(lora=LORA)
    prepared = config.prepare_chat(base_folder, base_folder)
    adapted, _ = tuned_model(base_folder, config, prepared, cpu.device)
    for name, param in adapted.named_parameters():
        if name.endswith("lora_B.weight"):
            torch.nn.init.normal_(param, std=0.5)
    assert reference_logps(adapted) == reference_logps(plain)
    with torch.no_grad():
        ids = torch.tensor([encode_pairs(items[:1], HeloxChat(processor), 64)[0].chosen.ids])
        assert not torch.equal(adapted(ids).logits, plain(ids).logits)


def test_lora_dpo_in_two_processes_follows_one_process_and_resumes_under_fsdp(
    base_folder, preference_pairs, tmp_path
) -> None:
    """Adapters on a frozen base in two processes under DDP, each scoring its share of the
    reference with the adapters off: the losses, metrics and merged weights of one process
    that takes the rows of both, starting at the reference. Rerun from the checkpoint of step
    3 with the base sharded by FSDP2, it ends as the uninterrupted run did."""
    config = DPOConfig(
        seq_len=64, batch_size=3, learning_rate=1e-2, warmup_steps=1, total_steps=6,
        eval_steps=6, eval_batches=8, save_steps=3, log_steps=3, val_fraction=0.25,
        device="cpu", compile=False, nproc=NPROC, lora=dataclasses.replace(LORA, dropout=0.0),
    )  # fmt: skip
    run = {"seed": SEED, "tracking": NO_TRACKING}
    two, one = tmp_path / "two" / "final", tmp_path / "one" / "final"
    job = DPOJob(str(base_folder), str(preference_pairs), str(two), config, **run)
    shared = launch_dpo(job)
    single = run_dpo(base_folder, preference_pairs, one, in_one_process(config), threads=1, **run)
    assert_same_losses(shared, single)
    for key in ("val_loss", "val_reward_accuracy", "val_chosen_logratio"):
        assert shared[key] == pytest.approx(single[key], rel=1e-5), key
    assert shared["base_val_chosen_logratio"] == shared["base_val_rejected_logratio"] == 0.0
    assert shared["base_val_reward_accuracy"] == 0.5 and shared["val_chosen_logratio"] != 0.0
    single_weights = load_file(one / MODEL_FILE)
    for name, value in load_file(two / MODEL_FILE).items():
        assert torch.allclose(value, single_weights[name], rtol=1e-4, atol=1e-6), name

    as_if_killed_after(two, 3)
    log_path = tmp_path / "dpo.log"
    resumed = launch_dpo(
        dataclasses.replace(job, config=dataclasses.replace(config, fsdp=True)), log_path
    )
    assert resumed_step(log_path.read_text()) == 3
    assert_same_losses(resumed, shared)
    assert resumed["val_loss"] == pytest.approx(shared["val_loss"], rel=1e-5)
    for name, value in load_file(two / MODEL_FILE).items():
        assert torch.allclose(value, single_weights[name], rtol=1e-4, atol=1e-6), name
    assert read_json(two / "adapter" / "adapter_config.json")["r"] == LORA.rank


def test_biases_of_an_adapted_projection_keep_working() -> None:
    """A projection with a bias (Qwen2's q, k and v have them) keeps it, frozen, and the merge
    leaves it as it was."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(12, 6, bias=True)
    holder = torch.nn.Module()
    holder.q_proj = linear
    apply_lora(holder, LoRAConfig(rank=2, alpha=4.0, dropout=0.0, targets=["q_proj"]), "sft.lora")
    adapted = holder.q_proj
    torch.nn.init.normal_(adapted.lora_B.weight)
    x = torch.randn(3, 12)
    expected = linear(x) + 2.0 * (x @ adapted.lora_A.weight.T @ adapted.lora_B.weight.T)
    assert torch.allclose(adapted(x), expected, atol=1e-6)
    assert adapted.bias is linear.bias and not adapted.bias.requires_grad
    merged, factors = merge_adapters(holder.state_dict(), scale=2.0)
    assert set(merged) == {"q_proj.weight", "q_proj.bias"} and len(factors) == 2
    assert torch.equal(merged["q_proj.bias"], linear.bias)
    assert torch.allclose(
        torch.nn.functional.linear(x, merged["q_proj.weight"], linear.bias), expected, atol=1e-5
    )


def test_refusals_name_their_keys(base_folder) -> None:
    assert config_errors({"pretrain": {"lora": {"rank": 8}}}) == [
        "config key pretrain.lora: not allowed here: LoRA adapts a trained model, so it "
        "belongs under sft or dpo; pretraining trains every weight."
    ]
    (unknown,) = config_errors({"dpo": {"lora": {"targets": ["q_proj", "wq"]}}})
    assert unknown.startswith("config key dpo.lora.targets.1: 'wq' is not one of")
    gelu = tiny_config(400, 64, use_swiglu=False)
    with pytest.raises(ConfigError, match=r"config key sft\.lora\.targets: gate_proj names no"):
        apply_lora(seeded_model(gelu), LoRAConfig(), "sft.lora")
    attention = LoRAConfig(rank=65, targets=["q_proj", "v_proj"])
    with pytest.raises(ConfigError, match=r"config key dpo\.lora\.rank: 65 is more than"):
        apply_lora(seeded_model(gelu), attention, "dpo.lora")
    with pytest.raises(ConfigError, match=r"config key sft\.float8: .* sft\.lora"):
        SFTConfig(float8=True, lora=LORA)
    assert SFTConfig(**{"lora": {"rank": 4}}).lora == LoRAConfig(rank=4)


def test_each_stage_has_its_own_adapters() -> None:
    """`sft.lora` is SFT's alone (DPO takes pretraining's keys, never SFT's); stated, its
    other keys take their defaults."""
    config = resolve_config({"sft": {"lora": {"rank": 4}}})
    assert config["sft"]["lora"] == dataclasses.asdict(LoRAConfig(rank=4))
    assert config["dpo"]["lora"] is None and "lora" not in config["pretrain"]
    assert resolve_config({"dpo": {"lora": {}}})["dpo"]["lora"]["rank"] == LoRAConfig().rank


def test_lora_is_refused_where_helox_adds_its_chat_markers(real_tokenizers, tmp_path) -> None:
    """Mistral 7B v0.1's tokenizer has no chat template: SFT adds Helox's markers as new rows,
    which frozen under LoRA would all stay one mean, so LoRA is refused naming the key."""
    hf = tmp_path / "hf"
    tokenizer = real_tokenizers / "mistral-7b-v0.1" / "tokenizer.model"
    llama_folder(hf, tokenizer, vocab_size=32000, hidden_size=16, intermediate_size=32)
    (hf / "tokenizer_config.json").write_text('{"bos_token": "<s>", "eos_token": "</s>"}')
    imported = import_hf_folder(hf, tmp_path / "imported")
    config = dataclasses.replace(SFT, lora=LORA)
    prepared = config.prepare_chat(imported, imported)
    assert prepared.added_ids
    with pytest.raises(ConfigError, match=r"config key sft\.lora: .* brings no chat template"):
        tuned_model(imported, config, prepared, torch.device("cpu"))
    whole, _ = tuned_model(imported, SFTConfig(), prepared, torch.device("cpu"))
    assert whole.config.vocab_size == 32000 + len(prepared.added_ids)
