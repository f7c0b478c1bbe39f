"""The original guide's manual workflow, walked through Helox's faces on a small real corpus."""

from __future__ import annotations

import json
import math
import shutil
import sysconfig
from pathlib import Path

import yaml

from helox import (
    DataCollector,
    DatasetBuilder,
    DeviceManager,
    ModelConfig,
    PretrainingTrainer,
    TextCleaner,
    TokenizerTrainer,
    TrainingConfig,
    create_model_from_config,
    save_dataset,
)
from helox.cli.main import main as helox_main
from helox.common.io import iter_jsonl, read_json
from helox.train.step_folders import step_dirs

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def copy_corpus(folder, count=40):
    folder.mkdir()
    for path in sorted(STDLIB.glob("*.py"))[:count]:
        shutil.copy(path, folder / path.name)
    (folder / "nested").mkdir()
    shutil.copy(STDLIB / "json" / "decoder.py", folder / "nested" / "decoder.py")


def test_guide_manual_workflow(tmp_path):
    copy_corpus(tmp_path / "raw")
    cleaner = TextCleaner(min_length=100, max_url_char_fraction=0.1)
    collected = DataCollector(tmp_path / "data", cleaner).collect_from_directory(
        tmp_path / "raw", recursive=True
    )
    sources = {record["source"] for record in iter_jsonl(collected)}
    assert "nested/decoder.py" in sources and len(sources) > 30

    model_path, vocab_path = TokenizerTrainer(vocab_size=800, model_type="bpe").train_from_jsonl(
        collected, output_prefix="guide", output_dir=str(tmp_path / "tok")
    )
    assert model_path.name == "guide.model" and vocab_path.is_file()

    dataset = DatasetBuilder(model_path, max_length=64).build_from_jsonl(
        collected, train_split=0.8, val_split=0.1, test_split=0.1
    )
    saved = save_dataset(dataset, tmp_path / "dataset", format="arrow")
    manifest = read_json(saved / "manifest.json")
    assert manifest["splits"]["train"]["tokens"] > 10_000

    device_manager = DeviceManager(force_device="cpu")
    assert device_manager.get_device_info()["type"] == "cpu"

    (tmp_path / "model.yaml").write_text(
        yaml.safe_dump(
            {
                "hidden_size": 64,
                "num_layers": 2,
                "num_attention_heads": 2,
                "vocab_size": manifest["vocab_size"],
                "max_position_embeddings": 128,
            }
        )
    )
    (tmp_path / "train.json").write_text(
        json.dumps(
            {
                "seq_len": 64,
                "batch_size": 4,
                "total_steps": 30,
                "warmup_steps": 3,
                "eval_steps": 10,
                "eval_batches": 3,
                "save_steps": 10,
                "log_steps": 5,
                "learning_rate": 3e-3,
            }
        )
    )
    model_config = ModelConfig.from_file(tmp_path / "model.yaml")
    training_config = TrainingConfig.from_file(tmp_path / "train.json")
    model = create_model_from_config(model_config)
    trainer = PretrainingTrainer(
        model, training_config, model_config, device_manager, checkpoint_dir=tmp_path / "ckpt"
    )
    metrics = trainer.train(dataset.train_loader(4), dataset.eval_loader("val", 4))
    assert metrics["steps"] == 30
    first, last = metrics["eval_history"][0]["val_loss"], metrics["eval_history"][-1]["val_loss"]
    assert last < first - 0.1 and last < math.log(manifest["vocab_size"]) - 0.5
    assert [step for step, _ in step_dirs(tmp_path / "ckpt")] == [20, 30]

    longer = TrainingConfig.from_file(tmp_path / "train.json")
    longer.total_steps = 40
    resumed = PretrainingTrainer(
        create_model_from_config(model_config),
        longer,
        model_config,
        device_manager,
        checkpoint_dir=tmp_path / "ckpt-2",
    ).train(
        dataset.train_loader(4),
        dataset.eval_loader("val", 4),
        resume_from_checkpoint=str(tmp_path / "ckpt" / "step_30"),
    )
    assert [step for step, _ in resumed["loss_history"]] == list(range(1, 41))
    assert resumed["loss_history"][:30] == metrics["loss_history"]

    final = trainer.save_model(tmp_path / "final", model_path)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"instruction": f"Say the number {i}.", "response": f"The number is {i}."})
            + "\n"
            for i in range(40)
        )
        + "not json\n"
    )
    (tmp_path / "sft.yaml").write_text(
        yaml.safe_dump(
            {
                "sft": {
                    "seq_len": 64,
                    "batch_size": 4,
                    "total_steps": 6,
                    "eval_steps": 3,
                    "save_steps": 3,
                    "log_steps": 2,
                    "val_fraction": 0.2,
                }
            }
        )
    )
    code = helox_main(
        [
            "sft",
            "--pretrained-model",
            str(final),
            "--instruction-data",
            str(pairs),
            "--tokenizer-model",
            str(model_path),
            "--output-dir",
            str(tmp_path / "sft"),
            "--config",
            str(tmp_path / "sft.yaml"),
            "--no-tracking",
        ]
    )
    assert code == 0
    sft_metrics = read_json(tmp_path / "sft" / "metrics.json")
    assert sft_metrics["stage"] == "sft" and sft_metrics["steps"] == 6
    assert sft_metrics["skipped_lines"] == {"malformed JSON (Expecting value)": 1}
