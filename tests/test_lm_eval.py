"""lm-evaluation-harness runs offline on a Helox model folder and agrees with Helox's scorer.

The harness scores the built-in next-line task, defined for it by a task YAML over the task's
local JSONL file; its accuracy, per-byte accuracy and every choice's log-likelihood must equal
those of `helox.eval.choice` with 0 shots.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from helox.eval.choice import read_choice_task, score_choices, summarize
from helox.eval.config import NextLineTaskConfig
from helox.eval.next_line import build_next_line_task
from helox.model.config import ModelConfig
from helox.model.folder import load_final, save_final
from helox.model.network import create_model_from_config
from helox.tokens.shards import ShardsConfig, build_dataset_shards
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer
from helox.tokens.vocab import load_tokenizer

pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed (extra `eval`)")

OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}

# What makes the harness score exactly what helox.eval.choice scores: the context as it is,
# each choice appended with no delimiter, and per-byte normalisation (`acc_bytes`).
TASK_YAML = """\
task: helox_next_line
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: context
doc_to_choice: choices
doc_to_target: gold
target_delimiter: ""
num_fewshot: 0
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_bytes
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


@pytest.fixture(scope="module")
def folder_and_task(doc_parts, tmp_path_factory):
    """A model folder with a real tokenizer and random weights, and the next-line task built
    from the test split of shards made with that tokenizer."""
    root = tmp_path_factory.mktemp("lm_eval")
    build_tokenizer(doc_parts, root / "tok", TokenizerConfig(vocab_size=600, eval_docs=5))
    tokenizer = root / "tok" / "spm.model"
    shards = ShardsConfig(parts=2, train_split=0.5, val_split=0.17, test_split=0.33)
    build_dataset_shards(doc_parts, tokenizer, root / "shards", shards, seed=5)
    task = root / "next_line.jsonl"
    config = NextLineTaskConfig(examples=40, choices=4, context_lines=4)
    build_next_line_task(root / "shards" / "manifest.json", tokenizer, task, config, seed=3)
    torch.manual_seed(0)
    model_config = ModelConfig(
        vocab_size=600,
        hidden_size=64,
        num_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
        initializer_range=0.2,
    )
    model = create_model_from_config(model_config)
    save_final(root / "final", model, model_config, tokenizer, {"stage": "pretrain"})
    return root / "final", task


def run_lm_eval(folder, task, tmp_path) -> tuple[dict, list[dict]]:
    """Run the harness's command line offline; its results and its per-question samples."""
    include = tmp_path / "tasks"
    include.mkdir()
    (include / "helox_next_line.yaml").write_text(TASK_YAML.format(data=json.dumps(str(task))))
    output = tmp_path / "lm_eval_out"
    env = {**os.environ, **OFFLINE, "HF_HOME": str(tmp_path / "hf_home")}
    command = [
        sys.executable,
        "-m",
        "lm_eval",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={folder},dtype=float32",
        "--tasks",
        "helox_next_line",
        "--include_path",
        str(include),
        "--device",
        "cpu",
        "--batch_size",
        "8",
        "--output_path",
        str(output),
        "--log_samples",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    (results_path,) = output.rglob("results_*.json")
    (samples_path,) = output.rglob("samples_helox_next_line_*.jsonl")
    results = json.loads(results_path.read_text())["results"]["helox_next_line"]
    samples = [json.loads(line) for line in samples_path.read_text().splitlines()]
    return results, samples


def test_lm_eval_offline_agrees_with_helox_scoring(folder_and_task, tmp_path):
    folder, task = folder_and_task
    results, samples = run_lm_eval(folder, task, tmp_path)

    examples = read_choice_task(task)
    model, _ = load_final(folder)
    processor = load_tokenizer(folder)
    scores = score_choices(model, processor, examples, 0, 0, "cpu", batch_size=8)
    ours = summarize(examples, scores, shots=0)

    assert results["sample_len"] == len(examples) == len(samples) == 40
    assert results["acc,none"] == ours["accuracy"]
    assert results["acc_bytes,none"] == ours["accuracy_norm"]
    for sample in samples:
        theirs = [float(log_likelihood) for log_likelihood, _ in sample["filtered_resps"]]
        expected = scores.log_likelihoods[sample["doc_id"]]
        assert theirs == pytest.approx(expected, rel=1e-4, abs=1e-3)
        assert max(theirs) < -1.0, "every choice has real tokens scored"
    assert len({round(ll, 3) for s in scores.log_likelihoods for ll in s}) > 100
