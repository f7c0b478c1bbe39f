"""DPO: preference data, the loss against a direct computation, learning, kill and resume."""

from __future__ import annotations

import ast
import json
import logging
import math
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from test_distributed import kill_tree, wait_for

from helox.common.io import read_json
from helox.data.stdlib import derive_sft_pairs, gather_stdlib
from helox.model.config import ModelConfig
from helox.model.folder import save_final
from helox.model.generate import is_chat_model
from helox.model.network import IGNORE_INDEX, create_model_from_config
from helox.tokens.chat import END, HeloxChat
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer
from helox.tokens.vocab import load_tokenizer
from helox.train.preference import DPOObjective, dpo_losses
from helox.train.tracking import TrackingConfig
from helox.tune.config import DPOConfig, SFTConfig
from helox.tune.dpo import run_dpo
from helox.tune.dpo_data import (
    PreferenceBatches,
    PreferencePair,
    collate_pairs,
    derive_preference_pairs,
    encode_pairs,
    read_preference_data,
    swap_body,
)
from helox.tune.sft import run_sft

SEED = 1337
MODEL = ModelConfig(
    hidden_size=64, num_layers=2, num_attention_heads=2, max_position_embeddings=256
)
NO_TRACKING = TrackingConfig(enabled=False)
# What the SFT reference and the DPO runs train with alike: 200 steps of 8 rows on CPU.
TRAINING = {
    "device": "cpu",
    "compile": False,
    "seq_len": 256,
    "warmup_steps": 2,
    "batch_size": 8,
    "total_steps": 200,
    "eval_steps": 100,
    "save_steps": 100,
}
DPO = DPOConfig(
    max_pairs=800,
    val_fraction=0.2,
    learning_rate=1e-3,
    eval_batches=20,
    log_steps=10,
    beta=0.1,
    **TRAINING,
)


@pytest.fixture(scope="module")
def derived(doc_parts, tmp_path_factory) -> dict[str, Path]:
    """Real data: a standard-library sample, its SFT pairs and the preference pairs from them."""
    root = tmp_path_factory.mktemp("dpo_data")
    gather_stdlib(root / "raw", 3_000_000)
    derive_sft_pairs(root / "sft.jsonl", 1600, 500, SEED, root=root / "raw")
    derive_preference_pairs(root / "sft.jsonl", root / "dpo.jsonl", DPO.max_pairs, SEED)
    build_tokenizer(doc_parts, root / "tok", TokenizerConfig(vocab_size=800, eval_docs=5))
    return {
        "raw": root / "raw",
        "sft": root / "sft.jsonl",
        "dpo": root / "dpo.jsonl",
        "tokenizer": root / "tok" / "spm.model",
    }


@pytest.fixture(scope="module")
def sft_folder(derived, tmp_path_factory) -> Path:
    """A small model fine-tuned on the SFT pairs: the frozen reference of the DPO runs."""
    root = tmp_path_factory.mktemp("reference")
    torch.manual_seed(0)
    config = ModelConfig(**{**MODEL.__dict__, "vocab_size": 800})
    save_final(
        root / "init",
        create_model_from_config(config),
        config,
        derived["tokenizer"],
        {"stage": "pretrain"},
    )
    sft = SFTConfig(learning_rate=3e-3, log_steps=20, val_fraction=0.15, **TRAINING)
    run_sft(root / "init", derived["sft"], root / "sft", sft, SEED, NO_TRACKING, threads=1)
    return root / "sft"


def test_reader_skips_bad_lines_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    good = {"prompt": "Add one.", "chosen": "x + 1", "rejected": "x - 1"}
    chat = {"messages": [{"role": "user", "content": "hi"}], "chosen": "hello", "rejected": "no"}
    lines = [
        json.dumps(good),
        "{broken",
        json.dumps({"prompt": "p", "chosen": "same", "rejected": "same"}),
        json.dumps({"chosen": "a", "rejected": "b"}),
        json.dumps({**chat, "messages": [{"role": "assistant", "content": "x"}]}),
        json.dumps(chat),
        json.dumps({"prompt": "p", "chosen": "a"}),
    ]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\n")
    data = read_preference_data(path)
    assert [pair.chosen for pair in data.items] == ["x + 1", "hello"]
    assert sum(data.skipped.values()) == 6
    assert f"{path}:2: malformed JSON" in data.skipped_examples[0]
    assert f'{path}:3: "chosen" and "rejected" are the same text' in data.skipped_examples
    assert any(e.startswith(f"{path}:5:") and "user turn" in e for e in data.skipped_examples)
    assert any(e.startswith(f"{path}:7:") and '"rejected"' in e for e in data.skipped_examples)
    assert any(e.startswith(f"{path}:8: invalid UTF-8") for e in data.skipped_examples)


def test_reader_takes_the_public_preference_shapes(tmp_path: Path) -> None:
    question = "How do I reverse a list in Python?"
    good, bad = "Use items[::-1] or items.reverse().", "Lists cannot be reversed."
    user = {"role": "user", "content": question}
    system = {"role": "system", "content": "You answer briefly."}

    def answer(text: str) -> dict:
        return {"role": "assistant", "content": text}

    records = [
        # TRL explicit prompt, conversational
        {"prompt": [user], "chosen": [answer(good)], "rejected": [answer(bad)]},
        # UltraFeedback (binarized): the prompt, whole conversations, "messages" = chosen
        {"prompt": question, "prompt_id": "0", "chosen": [user, answer(good)],
         "rejected": [user, answer(bad)], "messages": [user, answer(good)],
         "score_chosen": 9.0, "score_rejected": 2.0},
        # TRL implicit prompt: the shared start of both conversations
        {"chosen": [system, user, answer(good)], "rejected": [system, user, answer(bad)]},
        # Anthropic HH
        {"chosen": f"\n\nHuman: {question}\n\nAssistant: {good}",
         "rejected": f"\n\nHuman: {question}\n\nAssistant: {bad}"},
        # HH as older TRL scripts split it: the transcript up to "Assistant:" is the prompt
        {"prompt": f"\n\nHuman: Hi.\n\nAssistant: Hello!\n\nHuman: {question}\n\nAssistant:",
         "chosen": f" {good}", "rejected": f" {bad}"},
        # refused: the prompt is not the question the conversations answer
        {"prompt": "Sort a list.", "chosen": [user, answer(good)], "rejected": [user, answer(bad)]},
        # refused: the two conversations start differently
        {"chosen": [system, user, answer(good)], "rejected": [user, answer(bad)]},
        # refused: an answer alone with no prompt
        {"chosen": [answer(good)], "rejected": [answer(bad)]},
    ]  # fmt: skip
    path = tmp_path / "public.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    data = read_preference_data(path)
    assert [(p.prompt, p.chosen, p.rejected) for p in data.items] == [
        ([user], good, bad),
        ([user], good, bad),
        ([system, user], good, bad),
        ([user], good, bad),
        ([{"role": "user", "content": "Hi."}, answer("Hello!"), user], good, bad),
    ]
    assert [e.removeprefix(f"{path}:") for e in data.skipped_examples] == [
        '6: "prompt" is not the turn that "chosen" answers',
        '7: "chosen" and "rejected" differ before their last turn',
        '8: "chosen" is an answer alone, and there is no "prompt"',
    ]


def test_only_the_answers_of_a_multi_turn_pair_are_trained(derived) -> None:
    processor = load_tokenizer(derived["tokenizer"])
    earlier = [
        {"role": "user", "content": "Reverse a list."},
        {"role": "assistant", "content": "return items[::-1]"},
        {"role": "user", "content": "And a string?"},
    ]
    pair = PreferencePair(earlier, "return text[::-1]", "return text")
    (encoded,) = encode_pairs([pair], HeloxChat(processor), 256)
    for chat, answer in ((encoded.chosen, pair.chosen), (encoded.rejected, pair.rejected)):
        trained = [i for i, t in zip(chat.ids, chat.trained, strict=True) if t]
        assert trained == processor.encode(answer) + [END]


def test_pairs_cut_before_their_answers_differ_are_counted(derived) -> None:
    processor = load_tokenizer(derived["tokenizer"])
    question = "def add(a, b):\n    return a + b\n" * 20
    pairs = [
        PreferencePair([{"role": "user", "content": "Add one."}], "x + 1", "x - 1"),
        PreferencePair([{"role": "user", "content": question}], "x + 1", "x - 1"),
        PreferencePair([{"role": "user", "content": "Add."}], question + "x", question + "y"),
    ]
    skipped = Counter()
    assert len(encode_pairs(pairs, HeloxChat(processor), 64, skipped)) == 1
    assert skipped == {
        "an answer has no token within seq_len (64 tokens)": 1,
        "the answers differ only after seq_len (64 tokens)": 1,
    }


def test_rejected_answer_keeps_the_signature_over_another_functions_body() -> None:
    function = 'def area(width, height):\n    """Return the area."""\n    return width * height\n'
    donor = 'def greet(name):\n    """Say hello."""\n    text = "hi " + name\n    return text\n'
    swapped = swap_body(function, donor)
    node = ast.parse(swapped).body[0]
    assert node.name == "area" and ast.get_docstring(node) == "Say hello."
    assert ast.unparse(node.args) == "width, height"
    assert [ast.unparse(s) for s in node.body[1:]] == ["text = 'hi ' + name", "return text"]
    assert swap_body(function, "x = 1\n") is None


def test_derived_pairs_are_real_functions_against_swapped_statements(derived) -> None:
    pairs = read_preference_data(derived["dpo"]).items
    sft_responses = {json.loads(line)["response"] for line in derived["sft"].open()}
    assert len(pairs) > 300
    for pair in pairs:
        assert pair.chosen in sft_responses and pair.rejected not in sft_responses
        chosen, rejected = (ast.parse(text).body[0] for text in (pair.chosen, pair.rejected))
        assert chosen.name == rejected.name
        assert ast.unparse(chosen.args) == ast.unparse(rejected.args)
        assert ast.get_docstring(chosen) != ast.get_docstring(rejected)


@torch.no_grad()
def direct_log_prob(model, ids: list[int], trained: list[bool]) -> float:
    """Sum of log p(token) over the trained tokens of one sequence, run on its own."""
    logits = model(torch.tensor([ids[:-1]])).logits[0].double()
    logps = torch.log_softmax(logits, -1)
    return sum(
        float(logps[i, token])
        for i, (token, t) in enumerate(zip(ids[1:], trained[1:], strict=True))
        if t
    )


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_dpo_loss_and_log_ratios_match_a_direct_computation(derived, label_smoothing) -> None:
    processor = load_tokenizer(derived["tokenizer"])
    pairs = encode_pairs(read_preference_data(derived["dpo"]).items[:3], HeloxChat(processor), 200)
    torch.manual_seed(0)
    config = ModelConfig(**{**MODEL.__dict__, "vocab_size": 800})
    policy, reference = create_model_from_config(config), create_model_from_config(config)
    for pair in pairs:
        pair.reference = tuple(
            direct_log_prob(reference, s.ids, s.trained) for s in (pair.chosen, pair.rejected)
        )
    beta = 0.3
    expected_losses, expected_chosen, expected_rejected = [], [], []
    for pair in pairs:
        chosen = direct_log_prob(policy, pair.chosen.ids, pair.chosen.trained) - pair.reference[0]
        rejected = (
            direct_log_prob(policy, pair.rejected.ids, pair.rejected.trained) - pair.reference[1]
        )
        margin = beta * (chosen - rejected)
        sigmoid = 1 / (1 + math.exp(-margin))
        loss = -(1 - label_smoothing) * math.log(sigmoid) - label_smoothing * math.log(1 - sigmoid)
        expected_losses.append(loss)
        expected_chosen.append(chosen)
        expected_rejected.append(rejected)
    objective = DPOObjective(beta, label_smoothing)
    for pack_width in (None, 512):  # one answer to a row, and answers packed together
        input_ids, labels, extra = collate_pairs(pairs, pack_width, processor.pad)
        assert labels[labels != IGNORE_INDEX].numel() == sum(
            sum(s.trained[1:]) for p in pairs for s in (p.chosen, p.rejected)
        )
        _, logps = objective.policy_logps(policy, input_ids, labels, extra)
        losses, chosen, rejected = dpo_losses(
            logps, extra["reference_logps"], beta, label_smoothing
        )
        assert chosen.tolist() == pytest.approx(expected_chosen, abs=1e-3)
        assert rejected.tolist() == pytest.approx(expected_rejected, abs=1e-3)
        assert losses.tolist() == pytest.approx(expected_losses, abs=1e-4)
        loss, _ = objective.loss(policy, input_ids, labels, extra)
        assert float(loss) == pytest.approx(sum(expected_losses) / len(pairs), abs=1e-4)


def test_batches_are_seeded_and_resume_exactly(derived) -> None:
    processor = load_tokenizer(derived["tokenizer"])
    pairs = encode_pairs(read_preference_data(derived["dpo"]).items[:20], HeloxChat(processor), 200)
    for pair in pairs:
        pair.reference = (0.0, 0.0)
    batches = PreferenceBatches(pairs, 3, seed=5, pack_width=256, pad_id=processor.pad)
    for _ in range(4):
        next(batches)
    state = batches.state()
    expected = next(batches)
    again = PreferenceBatches(pairs, 3, seed=5, pack_width=256, pad_id=processor.pad)
    again.load_state(state)
    got = next(again)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert torch.equal(got[2]["sequence_ids"], expected[2]["sequence_ids"])


def test_dpo_raises_held_out_preference_accuracy_over_the_reference(
    derived, sft_folder, tmp_path
) -> None:
    metrics = run_dpo(
        sft_folder, derived["dpo"], tmp_path / "final", DPO, SEED, NO_TRACKING, threads=1
    )
    assert metrics["base_val_reward_accuracy"] == 0.5  # the reference ties with itself
    assert metrics["base_val_chosen_logratio"] == metrics["base_val_rejected_logratio"] == 0.0
    assert metrics["val_reward_accuracy"] > metrics["base_val_reward_accuracy"] + 0.05
    assert metrics["val_preference_accuracy"] > metrics["base_val_preference_accuracy"]
    assert metrics["val_reward_margin"] > 0
    assert metrics["val_chosen_logratio"] > metrics["val_rejected_logratio"]
    assert metrics["val_pairs"] > 30 and metrics["stage"] == "dpo"
    saved = read_json(tmp_path / "final" / "metrics.json")
    assert saved["val_reward_accuracy"] == metrics["val_reward_accuracy"]
    assert is_chat_model(tmp_path / "final")
    assert "chat_template" in read_json(tmp_path / "final" / "tokenizer_config.json")


RUN_DPO = """
import sys
from pathlib import Path
from helox.tune.config import DPOConfig
from helox.train.tracking import TrackingConfig
from helox.tune.dpo import run_dpo
sft, data, out, config = sys.argv[1:5]
run_dpo(sft, data, out, DPOConfig(**__import__("json").loads(config)), 1337,
        TrackingConfig(enabled=False), threads=1)
"""


def test_killed_dpo_resumes_and_matches_an_uninterrupted_run(
    derived, sft_folder, tmp_path, caplog
) -> None:
    config = {**DPO.__dict__, "total_steps": 16, "eval_steps": 8, "save_steps": 4, "log_steps": 4}
    output = tmp_path / "killed" / "final"
    command = [
        sys.executable,
        "-c",
        RUN_DPO,
        str(sft_folder),
        str(derived["dpo"]),
        str(output),
        json.dumps(config),
    ]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(output.parent / "checkpoints" / "step_8" / "COMPLETE", first)
    kill_tree(first)
    assert first.returncode == -signal.SIGKILL
    assert not output.exists()
    with caplog.at_level(logging.INFO, logger="helox.train.loop"):
        resumed = run_dpo(
            sft_folder, derived["dpo"], output, DPOConfig(**config), SEED, NO_TRACKING, threads=1
        )
    assert "resumed from" in caplog.text
    uninterrupted = run_dpo(
        sft_folder,
        derived["dpo"],
        tmp_path / "whole" / "final",
        DPOConfig(**config),
        SEED,
        NO_TRACKING,
        threads=1,
    )
    assert len(resumed["loss_history"]) == 16
    assert resumed["loss_history"] == uninterrupted["loss_history"]
    assert resumed["val_reward_accuracy"] == uninterrupted["val_reward_accuracy"]
    assert resumed["val_loss"] == uninterrupted["val_loss"]
