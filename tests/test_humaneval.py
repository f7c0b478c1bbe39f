"""HumanEval offline: the wheel's problems, completion handling, pass@k, and real runs."""

from __future__ import annotations

import gzip
import json
import math
from fractions import Fraction

import pytest
import torch
from tiny_models import seeded_model, tiny_config

from helox.cli.main import main
from helox.common.config_files import ConfigError
from helox.eval.config import HumanEvalConfig
from helox.eval.humaneval import (
    PROBLEM_COUNT,
    Solver,
    execute,
    extract_code,
    load_problems,
    pass_at_k,
    run_canonical,
    run_humaneval,
    truncate_at_stop,
)
from helox.model.folder import save_final
from helox.tokens.chat import END, EOS
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer

# HumanEval/0, has_close_elements, solved correctly.
CLOSE_ELEMENTS_BODY = (
    "    for i, a in enumerate(numbers):\n"
    "        for b in numbers[i + 1 :]:\n"
    "            if abs(a - b) < threshold:\n"
    "                return True\n"
    "    return False\n"
)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """A tiny model generates faster on one thread (the device manager reads
    OMP_NUM_THREADS), by far on a busy two-core machine."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def problems():
    return load_problems()


@pytest.fixture(scope="module")
def model_folders(doc_parts, tmp_path_factory):
    """A random tiny base model folder and the same weights as a chat (SFT) folder."""
    root = tmp_path_factory.mktemp("humaneval_models")
    build_tokenizer(doc_parts, root / "tok", TokenizerConfig(vocab_size=600, eval_docs=5))
    model_config = tiny_config(600, 128)
    model = seeded_model(model_config)
    return {
        stage: save_final(
            root / stage, model, model_config, root / "tok" / "spm.model", {"stage": stage}
        )
        for stage in ("pretrain", "sft")
    }


def test_problems_load_from_the_wheel(problems):
    assert len(problems) == PROBLEM_COUNT
    assert problems[0].task_id == "HumanEval/0"
    assert problems[-1].task_id == "HumanEval/163"
    assert len({problem.task_id for problem in problems}) == PROBLEM_COUNT
    for problem in problems:
        assert f"def {problem.entry_point}(" in problem.prompt
        assert "def check(" in problem.test
        assert problem.canonical_solution.strip()
    assert [p.task_id for p in load_problems(limit=3)] == [
        "HumanEval/0",
        "HumanEval/1",
        "HumanEval/2",
    ]


def test_a_broken_problem_file_names_its_line(tmp_path):
    path = tmp_path / "problems.jsonl.gz"
    good = {"task_id": "t/0", "prompt": "def f():\n", "canonical_solution": "", "test": ""}
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.write(json.dumps({**good, "entry_point": "f"}) + "\n")
        out.write(json.dumps(good) + "\n")
    with pytest.raises(ValueError, match=r"problems.jsonl.gz:2: .*'entry_point'"):
        load_problems(path=path)
    path.write_bytes(gzip.compress(b"{not json\n"))
    with pytest.raises(ValueError, match=r"problems.jsonl.gz:1: not JSON"):
        load_problems(path=path)


def test_completions_stop_where_the_function_ends():
    body = "    return x + 1\n"
    assert truncate_at_stop(body) == body
    assert truncate_at_stop(body + "\ndef other():\n    pass\n") == body
    assert truncate_at_stop(body + "\n# a comment\nprint(1)\n") == body
    assert truncate_at_stop(body + "\nif __name__ == '__main__':\n") == body
    assert truncate_at_stop(body + "\nprint(f(1))\n\nclass A: pass") == body
    assert (
        truncate_at_stop("    # inside the body stays\n" + body)
        == "    # inside the body stays\n" + body
    )
    assert truncate_at_stop("\nclass A: pass") == ""


def test_pass_at_k_matches_the_combinatorial_definition():
    for n in range(1, 13):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
                assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12)
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 1, 5) == 1.0  # every sample drawn, so the correct one is among them
    assert pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)
    # Large n, where C(n, k) overflows a float: the product form stays exact enough.
    exact = 1 - Fraction(math.comb(190, 100), math.comb(200, 100))
    assert pass_at_k(200, 10, 100) == pytest.approx(float(exact), rel=1e-9)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_config_refuses_impossible_pass_at_k():
    with pytest.raises(ConfigError, match=r"eval\.humaneval\.pass_at .*pass@10.*samples >= 10"):
        HumanEvalConfig(samples=5, temperature=0.8, pass_at=[1, 10])
    with pytest.raises(ConfigError, match=r"eval\.humaneval\.samples is 3 .*temperature is 0"):
        HumanEvalConfig(samples=3, temperature=0.0)


def test_code_is_extracted_from_chat_replies(problems):
    problem = problems[0]
    full_function = (
        "from typing import List\n\n\n"
        "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
        + CLOSE_ELEMENTS_BODY
    )
    replies = [
        f"Here it is:\n```python\n{full_function}```\nIt compares every pair.",
        f"```\n{CLOSE_ELEMENTS_BODY}```",
        CLOSE_ELEMENTS_BODY,
        "for i, a in enumerate(numbers):\n"
        "    for b in numbers[i + 1 :]:\n"
        "        if abs(a - b) < threshold:\n"
        "            return True\n"
        "return False\n",
        f"```py\n{full_function}",  # an unclosed block, as a reply cut at max_new_tokens
        "```python\nreturn True\n```",  # wrong
    ]
    codes = [extract_code(reply, problem) for reply in replies]
    assert codes[0] == f"{problem.prompt}\n{full_function}"
    assert "It compares" not in codes[0] and "Here it is" not in codes[0]
    assert codes[2] == problem.prompt + CLOSE_ELEMENTS_BODY.rstrip("\n")
    results = execute([codes], [problem], HumanEvalConfig())[0]
    assert [result.passed for result in results] == [True] * 5 + [False]
    assert results[-1].reason == "AssertionError"


def test_canonical_solutions_all_pass(problems):
    result = run_canonical(HumanEvalConfig())
    assert result["attempted"] == PROBLEM_COUNT
    assert result["failed"] == {}
    assert result["pass@1"] == 1.0
    assert result["problems_passed"] == PROBLEM_COUNT


def test_wrong_solutions_fail_with_their_reasons(problems):
    chosen = problems[:4]
    wrong = [
        [chosen[0].prompt + "    return not any(numbers)\n"],
        [chosen[1].prompt + "    return undefined_name\n"],
        [chosen[2].prompt + "    while True:\n        pass\n"],
        [chosen[3].prompt + "    import os\n    os._exit(0)\n"],  # leaves before the checks
    ]
    config = HumanEvalConfig(timeout_s=2.0)
    grouped = execute(wrong, chosen, config)
    reasons = [results[0].reason for results in grouped]
    assert reasons == [
        "AssertionError",
        "NameError",
        "timed out",
        "exited before its checks finished",
    ]


def check_result(result, samples, pass_at):
    assert json.loads(json.dumps(result)) == result
    assert result["problems"] == result["attempted"] == 5
    assert result["samples_per_problem"] == samples
    assert result["candidates"] == 5 * samples
    assert result["candidates_passed"] + sum(result["failure_reasons"].values()) == 5 * samples
    assert result["timed_out"] == result["failure_reasons"].get("timed out", 0)
    for k in pass_at:
        assert 0.0 <= result[f"pass@{k}"] <= 1.0
    assert result["seconds_generating"] > 0 and result["seconds_executing"] > 0


def test_run_humaneval_on_a_base_model(model_folders):
    config = HumanEvalConfig(limit=5, max_new_tokens=16, samples=2, pass_at=[1, 2], temperature=0.8)
    result = run_humaneval(model_folders["pretrain"], config, device="cpu", seed=3)
    check_result(result, samples=2, pass_at=[1, 2])
    assert result["chat"] is False
    assert result["pass@1"] <= result["pass@2"]
    again = run_humaneval(model_folders["pretrain"], config, device="cpu", seed=3)
    timings = ("seconds_generating", "seconds_executing", "seconds_per_problem")
    assert {k: v for k, v in again.items() if k not in timings} == {
        k: v for k, v in result.items() if k not in timings
    }


def test_run_humaneval_on_a_chat_model_truncates_long_prompts(model_folders):
    config = HumanEvalConfig(limit=5, max_new_tokens=100)  # 64 new tokens, 64 for the prompt
    result = run_humaneval(model_folders["sft"], config, device="cpu")
    check_result(result, samples=1, pass_at=[1])
    assert result["chat"] is True
    assert result["max_new_tokens"] == 64
    assert 0 < result["prompts_truncated"] <= 5


def test_cli_canonical_prints_pass_at_1_last(capsys):
    assert main(["humaneval", "--canonical", "--limit", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "pass@1 1.0"
    assert json.loads("\n".join(lines[:-1]))["attempted"] == 3


def test_base_samples_stop_at_a_stop_sequence_or_end_token(model_folders):
    solver = Solver(model_folders["pretrain"], HumanEvalConfig(), "cpu", seed=0)
    encode = solver.generator.tokenizer.encode
    assert not solver.stopped(encode("    return x + 1\n    y = 2"))
    assert solver.stopped(encode("    return x + 1\ndef g():"))
    assert solver.stopped([*encode("    return x"), EOS])
    chat = Solver(model_folders["sft"], HumanEvalConfig(), "cpu", seed=0)
    assert not chat.stopped(encode("```python\ndef f():\n    pass\n```\ndef g():"))
    assert chat.stopped([*encode("done"), END])
