"""Few-shot multiple-choice scoring: task files, prompts, log-likelihoods, accuracy."""

from __future__ import annotations

import json
import random

import pytest
import torch
from tiny_models import seeded_model, tiny_config

from helox.common.io import iter_jsonl
from helox.eval.choice import (
    SHOT_SEPARATOR,
    ChoiceExample,
    ChoiceScores,
    TaskFormatError,
    centered_accuracy,
    encode_pair,
    few_shot_prompt,
    fit_question,
    read_choice_task,
    row_log_likelihoods,
    run_choice_task,
    score_choices,
    shot_indices,
    summarize,
)
from helox.model.folder import save_final
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer
from helox.tokens.vocab import load_tokenizer

VALID = {"context": "Q: 1+1=\nA:", "choices": [" 2", " 3"], "gold": 0}


@pytest.fixture(scope="module")
def tokenizer_path(doc_parts, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    build_tokenizer(doc_parts, folder, TokenizerConfig(vocab_size=600, eval_docs=5))
    return folder / "spm.model"


@pytest.fixture(scope="module")
def processor(tokenizer_path):
    return load_tokenizer(tokenizer_path)


def tiny_model(max_positions: int = 256):
    return seeded_model(tiny_config(600, max_positions, initializer_range=0.2)).eval()


@pytest.fixture(scope="module")
def code_examples(doc_parts) -> list[ChoiceExample]:
    """Questions made of real source lines: a few lines of context, 2 to 5 choices."""
    lines = [
        line
        for record in iter_jsonl(doc_parts[0])
        for line in record["text"].splitlines()
        if len(line.strip()) > 10
    ]
    rng = random.Random(0)
    examples = []
    for index in range(24):
        start = rng.randrange(len(lines) - 10)
        context = "\n".join(lines[start : start + rng.randint(1, 4)]) + "\n"
        choices = rng.sample(lines, rng.randint(2, 5))
        examples.append(ChoiceExample(context, choices, index % len(choices)))
    return examples


def write_lines(path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


# ---------------------------------------------------------------------------- task files


def test_a_task_file_is_read_with_blank_lines_skipped(tmp_path):
    path = tmp_path / "task.jsonl"
    other = {"context": "x", "choices": ["a", "b", "c"], "gold": 2, "id": "extra keys are fine"}
    write_lines(path, [json.dumps(VALID), "", "   ", json.dumps(other)])
    examples = read_choice_task(path)
    assert examples == [
        ChoiceExample(VALID["context"], VALID["choices"], 0),
        ChoiceExample("x", ["a", "b", "c"], 2),
    ]


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('{"context": "x", "choices": ["a", "b"], "gold": 0', "not valid JSON"),
        ('["context", "choices"]', "expected a JSON object, got list"),
        ('{"choices": ["a", "b"], "gold": 0}', "missing field 'context'"),
        ('{"context": "x", "gold": 0}', "missing field 'choices'"),
        ('{"context": "x", "choices": ["a", "b"]}', "missing field 'gold'"),
        ('{"context": 3, "choices": ["a", "b"], "gold": 0}', "'context' must be a string"),
        ('{"context": "x", "choices": "ab", "gold": 0}', "'choices' must be a list of strings"),
        ('{"context": "x", "choices": ["a", 2], "gold": 0}', "'choices' must be a list"),
        ('{"context": "x", "choices": ["a"], "gold": 0}', "at least 2 entries, got 1"),
        ('{"context": "x", "choices": ["a", ""], "gold": 0}', "choice 1 is an empty string"),
        ('{"context": "x", "choices": ["a", "b"], "gold": "0"}', "'gold' must be an integer"),
        ('{"context": "x", "choices": ["a", "b"], "gold": true}', "'gold' must be an integer"),
        ('{"context": "x", "choices": ["a", "b"], "gold": 2}', "'gold' is 2, outside the 2"),
        ('{"context": "x", "choices": ["a", "b"], "gold": -1}', "'gold' is -1"),
    ],
)
def test_a_malformed_line_is_named_by_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "task.jsonl"
    write_lines(path, [json.dumps(VALID), "", bad_line, json.dumps(VALID)])
    with pytest.raises(TaskFormatError, match=rf"task\.jsonl:3: .*{message}"):
        read_choice_task(path)


def test_non_utf8_and_empty_files_are_named(tmp_path):
    binary = tmp_path / "latin1.jsonl"
    binary.write_bytes(json.dumps(VALID).encode() + b"\n" + b'{"context": "caf\xe9"}\n')
    with pytest.raises(TaskFormatError, match=r"latin1\.jsonl:2: not UTF-8"):
        read_choice_task(binary)
    for content in ("", "\n\n  \n"):
        empty = tmp_path / "empty.jsonl"
        empty.write_text(content, encoding="utf-8")
        with pytest.raises(TaskFormatError, match=r"empty\.jsonl: the task has no examples"):
            read_choice_task(empty)


# ---------------------------------------------------------------------------- prompts


def test_shots_are_seeded_distinct_and_never_the_question():
    for index in range(20):
        drawn = shot_indices(index, 20, 5, seed=7)
        assert drawn == shot_indices(index, 20, 5, seed=7)
        assert len(set(drawn)) == 5 and index not in drawn
        assert all(0 <= other < 20 for other in drawn)
    draws = {tuple(shot_indices(3, 20, 5, seed)) for seed in range(10)}
    assert len(draws) > 1
    assert sorted(shot_indices(2, 4, 10, seed=1)) == [0, 1, 3]
    assert shot_indices(0, 1, 3, seed=1) == []


def test_a_prompt_is_solved_shots_then_the_question(code_examples):
    shots = shot_indices(5, len(code_examples), 3, seed=0)
    prompt = few_shot_prompt(code_examples, 5, shots)
    solved = [
        code_examples[j].context + code_examples[j].choices[code_examples[j].gold] for j in shots
    ]
    assert prompt == SHOT_SEPARATOR.join([*solved, code_examples[5].context])
    assert few_shot_prompt(code_examples, 5, []) == code_examples[5].context


def test_trailing_whitespace_of_the_prompt_is_scored_with_the_choice(processor):
    prompt_ids, choice_ids = encode_pair(processor, "result =", " compute(value)")
    assert prompt_ids == processor.encode("result =")
    assert choice_ids == processor.encode(" compute(value)")  # no piece spans a space
    prompt_ids, choice_ids = encode_pair(processor, "import os \n", "import sys")
    assert prompt_ids == processor.encode("import os")
    assert choice_ids == processor.encode("import os \nimport sys")[len(prompt_ids) :]
    prompt_ids, _ = encode_pair(processor, "", "anything")
    assert prompt_ids == [2]  # </s>, which every training document followed


# ---------------------------------------------------------------------------- scoring


def direct_log_likelihood(model, prompt_ids: list[int], choice_ids: list[int]) -> float:
    """One unbatched forward over prompt and choice; the choice tokens' summed log-probs."""
    ids = torch.tensor([prompt_ids + choice_ids])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(ids[:, :-1]).logits.double(), dim=-1)[0]
    positions = torch.arange(len(prompt_ids) - 1, ids.size(1) - 1)
    return float(log_probs[positions, ids[0, len(prompt_ids) :]].sum())


def test_scores_equal_one_forward_per_choice_on_both_paths(processor, code_examples):
    model = tiny_model(max_positions=1024)
    scores = score_choices(model, processor, code_examples, 2, 3, "cpu", batch_size=5)
    assert scores.shots_used == [2] * len(code_examples) and not any(scores.truncated)
    fitted = [fit_question(processor, code_examples, i, 2, 3, 1024) for i in range(24)]
    rows = [question.rows(1024) for question in fitted]
    flat_rows = [row for question_rows, _ in rows for row in question_rows]
    flat_scored = [count for _, counts in rows for count in counts]
    whole_rows = iter(
        row_log_likelihoods(model, flat_rows, flat_scored, torch.device("cpu"), 5, processor.pad)
    )
    for index, example in enumerate(code_examples):
        prompt = few_shot_prompt(code_examples, index, shot_indices(index, 24, 2, seed=3))
        expected = [
            direct_log_likelihood(model, *encode_pair(processor, prompt, choice))
            for choice in example.choices
        ]
        assert scores.log_likelihoods[index] == pytest.approx(expected, rel=1e-5, abs=1e-4)
        batched_rows = [next(whole_rows) for _ in example.choices]
        assert batched_rows == pytest.approx(expected, rel=1e-5, abs=1e-4)
        assert max(expected) < -1.0  # a real sum over real tokens, not an empty one


def test_long_prompts_drop_shots_then_cut_the_context(processor, code_examples):
    model = tiny_model(max_positions=48)
    fitted = [
        fit_question(processor, code_examples, index, 3, 0, max_positions=48)
        for index in range(len(code_examples))
    ]
    assert any(question.shots < 3 for question in fitted), "no shot was dropped"
    for question in fitted:
        longest = len(question.prompt_ids) + max(map(len, question.choice_ids))
        assert (longest - 1 > 48) == question.truncated
        assert question.shots == 0 or not question.truncated
    context = "\n".join(["value = compute(value)"] * 80) + "\n"
    long_example = ChoiceExample(context, ["x = 1", "y"], 0)
    question = fit_question(processor, [long_example], 0, 3, 0, max_positions=48)
    assert question.truncated and question.shots == 0
    rows, scored = question.rows(48)
    assert [len(row) for row in rows] == [49, 49]
    assert scored == [len(ids) for ids in question.choice_ids]
    assert [row[-count:] for row, count in zip(rows, scored, strict=True)] == question.choice_ids

    examples = [*code_examples, long_example]
    scores = score_choices(model, processor, examples, 3, 0, "cpu", batch_size=4)
    assert scores.truncated[-1] and sum(scores.truncated) >= 1
    for row, count, likelihood in zip(rows, scored, scores.log_likelihoods[-1], strict=True):
        direct = direct_log_likelihood(model, row[:-count], row[-count:])
        assert likelihood == pytest.approx(direct, rel=1e-5, abs=1e-4)
    summary = summarize(examples, scores, 3)
    assert summary["truncated"] == sum(scores.truncated) and summary["shots_dropped"] >= 1


def test_centered_accuracy_and_chance_with_mixed_choice_counts():
    assert centered_accuracy(0.25, 0.25) == 0.0
    assert centered_accuracy(1.0, 0.25) == 1.0
    assert centered_accuracy(0.625, 0.25) == pytest.approx(0.5)
    examples = [
        ChoiceExample("a", ["x", "y"], 0),
        ChoiceExample("b", ["x", "y", "z", "w"], 3),
        ChoiceExample("c", ["xx", "y", "z", "w"], 0),
        ChoiceExample("d", ["x", "y", "z", "w"], 1),
    ]
    likelihoods = [
        [-1.0, -2.0],
        [-5.0, -1.0, -3.0, -4.0],
        [-1.5, -1.0, -9.0, -9.0],
        [-2.0, -1.0, -3.0, -3.0],
    ]
    scores = ChoiceScores(likelihoods, [0] * 4, [False] * 4)
    summary = summarize(examples, scores, shots=0)
    assert summary["chance"] == pytest.approx((1 / 2 + 3 / 4) / 4)
    assert summary["accuracy"] == 0.5  # questions a and d
    assert summary["accuracy_norm"] == 0.75  # c too: -1.5 over 2 bytes beats -1.0 over 1
    assert summary["centered_accuracy"] == pytest.approx((0.5 - 0.3125) / (1 - 0.3125))


def test_gold_set_to_the_models_choice_scores_one_and_random_gold_scores_chance(
    processor, code_examples
):
    model = tiny_model()
    scores = score_choices(model, processor, code_examples, 0, 0, "cpu", batch_size=8)
    best = [
        ChoiceExample(e.context, e.choices, max(range(len(e.choices)), key=ll.__getitem__))
        for e, ll in zip(code_examples, scores.log_likelihoods, strict=True)
    ]
    summary = summarize(best, score_choices(model, processor, best, 0, 0, "cpu", 8), 0)
    assert summary["accuracy"] == 1.0 and summary["centered_accuracy"] == 1.0
    rng = random.Random(1)
    many = [example for _ in range(6) for example in code_examples]
    shuffled = [ChoiceExample(e.context, e.choices, rng.randrange(len(e.choices))) for e in many]
    summary = summarize(shuffled, score_choices(model, processor, shuffled, 0, 0, "cpu", 16), 0)
    assert summary["examples"] == 144
    assert abs(summary["accuracy"] - summary["chance"]) < 0.12
    assert abs(summary["centered_accuracy"]) < 0.2


def test_run_choice_task_scores_a_model_folder(tmp_path, tokenizer_path, code_examples):
    model = tiny_model()
    folder = tmp_path / "final"
    save_final(folder, model, model.config, tokenizer_path, {"stage": "pretrain"})
    path = tmp_path / "code_lines.jsonl"
    write_lines(path, [json.dumps(vars(e)) for e in code_examples])
    result = run_choice_task(folder, path, shots=2, seed=0, device="cpu", batch_size=8)
    processor = load_tokenizer(tokenizer_path)
    scores = score_choices(model, processor, code_examples, 2, 0, "cpu", 8)
    expected = summarize(code_examples, scores, 2)
    assert result == {"task": "code_lines", **expected}
    assert json.loads(json.dumps(result)) == result
    assert 0.0 <= result["accuracy"] <= 1.0 and result["examples"] == 24
