"""The mistakes a new user makes at the command line and in config files: each gets a message
naming the file, key or argument and what to do, never a Python traceback."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_workflow import snakemake_command
from tiny_models import seeded_model, tiny_config

from helox.cli.main import main
from helox.common.config_files import ConfigError
from helox.common.schema import coerce_values
from helox.model.folder import save_final
from helox.pipeline.config import config_errors
from helox.tokens.shards import ShardsConfig, build_dataset_shards
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer
from helox.train.config import TrainingConfig
from helox.tune.config import SFTConfig


@pytest.fixture(scope="module")
def tiny(doc_parts, tmp_path_factory) -> Path:
    """A folder with `final/` (a pretrain model folder: real tokenizer, random weights, 64
    positions) and `shards/` made with the same tokenizer."""
    root = tmp_path_factory.mktemp("cli")
    build_tokenizer(doc_parts, root / "tok", TokenizerConfig(vocab_size=600, eval_docs=5))
    tokenizer = root / "tok" / "spm.model"
    shards = ShardsConfig(parts=2, train_split=0.5, val_split=0.25, test_split=0.25)
    build_dataset_shards(doc_parts, tokenizer, root / "shards", shards, seed=5)
    model_config = tiny_config(600, 64)
    model = seeded_model(model_config)
    save_final(root / "final", model, model_config, tokenizer, {"stage": "pretrain"})
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `helox ARGV`, argparse's refusals included."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------ config files


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pretrain:\n  total_steps: 5\n   batch_size: 2\n", "line 3, column 14: not valid YAML"),
        ("pretrain: [\n", "line 2, column 1: not valid YAML"),
        ("", "is empty: a config file maps sections to keys"),
        ("# nothing but a comment\n", "is empty"),
        ("- pretrain\n", "expected a mapping of keys to values, got list"),
    ],
)
def test_a_config_file_that_is_not_a_mapping_is_named_with_its_line(
    tmp_path, capsys, text, message
) -> None:
    path = tmp_path / "my.yaml"
    path.write_text(text)
    code, _, err = run(capsys, "config", "--config", str(path))
    assert code == 2
    assert f"helox: {path}" in err and message in err
    assert "Traceback" not in err


def test_a_missing_config_file_is_named_by_its_argument(tmp_path, capsys) -> None:
    code, _, err = run(capsys, "config", "--config", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert f"argument --config: {tmp_path / 'missing.yaml'}: no such file" in err


def test_numbers_written_as_text_and_empty_sections_are_read_as_meant() -> None:
    """What snakemake's `--config 'pretrain={...}'` hands over, YAML's `1e-3`, and a section
    whose keys are all commented out."""
    config = {
        "seed": "7",
        "sft": None,
        "dedup": {"near": None},
        "pretrain": {"total_steps": "5", "learning_rate": "1e-3", "compile": "false"},
        "model": {"vocab_size": "null", "num_key_value_heads": "2"},
        "tokenizer": {"model_type": "unigram"},
        "clean": {"min_text_length": "short"},
    }
    coerce_values(config)
    assert config["seed"] == 7
    assert config["sft"] == {} and config["dedup"] == {"near": {}}
    assert config["pretrain"] == {"total_steps": 5, "learning_rate": 0.001, "compile": False}
    assert config["model"] == {"vocab_size": None, "num_key_value_heads": 2}
    assert config["tokenizer"]["model_type"] == "unigram"  # a string where one belongs
    assert config["clean"]["min_text_length"] == "short"  # no number: the schema names it
    assert any("clean.min_text_length" in error for error in config_errors(config))


def test_helox_config_reads_a_learning_rate_without_a_dot(tmp_path, capsys) -> None:
    path = tmp_path / "my.yaml"
    path.write_text("pretrain:\n  learning_rate: 1e-3\n")  # YAML 1.1 reads this as text
    code, out, err = run(capsys, "config", "--config", str(path))
    assert code == 0, err
    assert yaml.safe_load(out)["pretrain"]["learning_rate"] == 0.001


def test_heads_that_do_not_divide_the_width_are_refused_before_any_job() -> None:
    errors = config_errors({"model": {"hidden_size": 256, "num_attention_heads": 3}})
    assert errors == [
        "config key model.num_attention_heads: 3 heads do not divide model.hidden_size 256; "
        "each head takes an equal share of the width"
    ]
    errors = config_errors({"model": {"num_attention_heads": 4, "num_key_value_heads": 3}})
    assert errors == [
        "config key model.num_key_value_heads: 3 does not divide model.num_attention_heads 4"
    ]


def test_rows_longer_than_the_model_sees_are_refused_before_any_job(tmp_path) -> None:
    errors = config_errors({"model": {"max_position_embeddings": 256}, "sft": {"seq_len": 384}})
    assert errors == [
        "config key sft.seq_len: 384 is more than model.max_position_embeddings 256, the "
        "longest sequence the model sees; lower the one or raise the other"
    ]
    imported = {"model": {"max_position_embeddings": 256}, "pretrain": {"init_from": str(tmp_path)}}
    assert config_errors(imported | {"sft": {"seq_len": 384}}) == []  # the folder's positions


def test_a_guide_config_file_is_checked_and_named(tmp_path) -> None:
    path = tmp_path / "train.json"
    path.write_text('{"learning_rate": "fast", "total_steps": "30"}')
    with pytest.raises(ConfigError) as refused:
        TrainingConfig.from_file(path)
    assert str(refused.value) == (
        f"{path}: invalid pretrain section:\n"
        "  config key pretrain.learning_rate: 'fast' is not of type 'number'"
    )
    path.write_text('{"max_pairs": 10, "total_steps": "30"}')
    assert SFTConfig.from_file(path).total_steps == 30


def dry_run(tmp_path: Path, *config: str) -> subprocess.CompletedProcess:
    command = snakemake_command(tmp_path, "results/pretrain/final", "-n", "--config", *config)
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_snakemake_config_overrides_are_read_as_numbers_and_checked(tmp_path) -> None:
    """Snakemake hands `--config` values inside a section over as text."""
    result = dry_run(tmp_path, "pretrain={total_steps: 5, learning_rate: 1e-3}")
    assert result.returncode == 0, result.stdout[-3000:]
    result = dry_run(tmp_path, "pretrain={total_steps: -5}")
    assert result.returncode != 0
    message = "config key pretrain.total_steps: -5 is less than the minimum of 1"
    assert message in result.stdout + result.stderr


def test_sft_checks_the_whole_config_file_and_names_the_section_of_the_key(
    tiny, tmp_path, capsys
) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"instruction": "say hi", "response": "hi"}\n')
    config = tmp_path / "my.yaml"
    argv = ["sft", "--pretrained-model", str(tiny / "final"), "--instruction-data", str(data)]
    argv += ["--output-dir", str(tmp_path / "out"), "--no-tracking", "--config", str(config)]
    config.write_text("pretrain:\n  lerning_rate: 0.001\n")
    code, _, err = run(capsys, *argv)
    assert code == 2 and "config key pretrain.lerning_rate: unknown key" in err
    config.write_text("sft:\n  learning_rate: fast\n")
    code, _, err = run(capsys, *argv)
    assert code == 2 and "config key sft.learning_rate: 'fast' is not of type 'number'" in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ model folders and sampling


def test_a_folder_that_is_not_a_model_folder_is_named_with_what_it_lacks(
    tiny, tmp_path, capsys
) -> None:
    code, _, err = run(capsys, "generate", str(tmp_path / "nowhere"), "--prompt", "x")
    assert code == 2
    assert f"argument folder: {tmp_path / 'nowhere'}: no such folder; pass a model folder" in err
    code, _, err = run(capsys, "eval", str(tiny / "shards"), "--shards", str(tiny / "shards"))
    assert code == 2
    lacks = "model.safetensors, config.json, tokenizer.json or tokenizer.model"
    assert f"is not a model folder: it has no {lacks}" in err
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("model.safetensors", "config.json"):
        (partial / name).write_bytes((tiny / "final" / name).read_bytes())
    code, _, err = run(capsys, "chat", str(partial))
    assert (
        code == 2
        and f"{partial} is not a model folder: it has no tokenizer.json or tokenizer.model" in err
    )
    code, _, err = run(capsys, "import-hf", str(tiny / "shards"), str(tmp_path / "imported"))
    assert code == 2
    assert "argument source: " in err and "not a Hugging Face model folder" in err


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("--max-new-tokens", "0", "0 must be at least 1"),
        ("--max-new-tokens", "-3", "-3 must be at least 1"),
        ("--top-p", "1.5", "1.5 must be above 0 and at most 1"),
        ("--temperature", "-1", "-1.0 must be a finite number, 0 or more"),
        ("--top-k", "-2", "-2 must be 0 or more"),
    ],
)
def test_a_sampling_value_out_of_range_is_named(tiny, capsys, argument, value, message) -> None:
    code, _, err = run(capsys, "generate", str(tiny / "final"), "--prompt", "def", argument, value)
    assert code == 2 and f"argument {argument}: {message}" in err


def test_top_k_zero_and_an_empty_prompt_still_generate(tiny, capsys) -> None:
    argv = ["generate", str(tiny / "final"), "--device", "cpu", "--max-new-tokens", "4"]
    code, out, err = run(capsys, *argv, "--prompt", "def", "--top-k", "0")
    assert code == 0, err
    assert out.startswith("def") and len(out.strip()) > len("def")
    code, out, err = run(capsys, *argv, "--prompt", "")
    assert code == 0, err
    assert out.strip()


def test_a_prompt_longer_than_the_model_sees_says_to_shorten_it(tiny, capsys) -> None:
    argv = ["generate", str(tiny / "final"), "--device", "cpu", "--prompt", "def f(): " * 100]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "the model sees at most 64 (model.max_position_embeddings)" in err
    assert "shorten the prompt" in err


def test_chat_reports_a_message_too_long_and_goes_on(tiny, capsys, monkeypatch) -> None:
    turns = "def f(): " * 100 + "\nhello\n\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(turns))
    code, out, err = run(capsys, "chat", str(tiny / "final"), "--device", "cpu")
    assert code == 0, err
    assert "shorten the prompt" in err
    assert out.count("model> ") == 1
    assert "was not fine-tuned for chat" in err  # a pretrain folder


def test_eval_names_a_wrong_shards_folder_and_a_wrong_card(tiny, tmp_path, capsys) -> None:
    final = str(tiny / "final")
    code, _, err = run(capsys, "eval", final, "--shards", str(tiny / "shards" / "train"))
    assert code == 2
    assert "argument --shards" in err and "not a shards folder: it has no manifest.json" in err
    code, _, err = run(capsys, "eval", final, "--shards", str(tiny / "shards"), "--batch-size", "0")
    assert code == 2 and "argument --batch-size: 0 must be at least 1" in err
    manifest = str(tiny / "shards" / "manifest.json")
    code, _, err = run(capsys, "eval", "--card", manifest)
    assert code == 2 and f"{manifest} is not an evaluate-stage result" in err


# ------------------------------------------------------------------ plan and status


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hours", "-2"], "argument --hours: -2.0 must be a finite number above 0"),
        (["--hours", "nan"], "argument --hours: nan must be a finite number above 0"),
        (["--depth", "0"], "argument --depth: 0 must be at least 1"),
        (["--depth", "4", "--seq-len", "0"], "argument --seq-len: 0 must be at least 1"),
        (["--depth", "4", "--mfu", "0"], "argument --mfu: 0.0 must be above 0 and at most 1"),
        (["--device", "h200"], "unknown device 'h200'; use one of rtx4090"),
    ],
)
def test_plan_names_a_bad_argument(capsys, argv, message) -> None:
    code, _, err = run(capsys, "plan", *argv)
    assert code == 2 and message in err
    assert "Traceback" not in err


def test_plan_takes_a_device_in_capitals_and_checks_its_config(tmp_path, capsys) -> None:
    code, out, err = run(capsys, "plan", "--device", "A100-40GB", "--depth", "2")
    assert code == 0, err
    assert "A100" in out
    config = tmp_path / "my.yaml"
    config.write_text("sft:\n  learning_rate: fast\n")
    code, _, err = run(capsys, "plan", "--config", str(config))
    assert code == 2 and "config key sft.learning_rate" in err


def test_status_outside_the_repository_says_where_to_run_it(tmp_path) -> None:
    command = [sys.executable, "-m", "helox.cli", "status"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "No Snakefile found" in result.stderr
    assert "Run helox status in the Helox repository" in result.stderr
    assert result.stdout == ""


def test_an_init_from_names_a_folder_and_one_stage_sets_one(tmp_path) -> None:
    missing = tmp_path / "no-such-model"
    assert config_errors({"dpo": {"init_from": str(missing)}}) == [
        f"config key dpo.init_from: {missing} is not a folder; name a Hugging Face model "
        "folder (config.json, its safetensors and tokenizer)"
    ]
    both = {"pretrain": {"init_from": str(tmp_path)}, "sft": {"init_from": str(tmp_path)}}
    assert config_errors(both) == [
        "config key sft.init_from: pretrain.init_from is set too, and a run starts from one "
        "imported folder (the stages before it do not run); keep one"
    ]
    assert config_errors({"dpo": {"init_from": str(tmp_path)}}) == []
