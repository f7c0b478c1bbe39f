"""Samples for the report: the base and SFT models after fixed prompts, with a fixed seed."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence

from helox.common.html import write_html
from helox.model.generate import Generator, SamplingConfig

BASE_PROMPTS = (
    "def fibonacci(n):\n",
    "import os\n\n\ndef list_python_files(folder):\n",
    'class Stack:\n    """A last-in, first-out stack."""\n\n    def push(self, item):\n',
)
CHAT_PROMPTS = (
    "Write a Python function `reverse_words(text)` that returns the words of text in reverse "
    "order.",
    "Write a Python function `is_prime(n)` that returns True if n is a prime number.",
    "Write a Python method `Stack.pop(self)` described as follows: Remove and return the top "
    "item of the stack.",
)


def sample_section(title: str, results: Sequence[tuple[str, str]]) -> str:
    """Each prompt in bold, followed by what the model wrote."""
    items = "".join(
        f"<h3>Prompt {i}</h3>\n<pre><b>{html.escape(prompt)}</b>{html.escape(output)}</pre>\n"
        for i, (prompt, output) in enumerate(results, start=1)
    )
    return f"<h2>{html.escape(title)}</h2>\n{items}"


def write_samples(
    pretrained_dir: str | os.PathLike,
    sft_dir: str | os.PathLike,
    path: str | os.PathLike,
    seed: int,
    max_new_tokens: int = 80,
) -> None:
    """The base model continues code prompts; the SFT model answers instructions."""
    sampling = SamplingConfig(max_new_tokens, temperature=0.7, top_k=40, seed=seed)
    base = Generator(pretrained_dir)
    base_results = [
        (prompt, base.complete(prompt, sampling).removeprefix(prompt)) for prompt in BASE_PROMPTS
    ]
    chat = Generator(sft_dir)
    chat_results = [
        (f"{prompt}\n\n", chat.reply([{"role": "user", "content": prompt}], sampling))
        for prompt in CHAT_PROMPTS
    ]
    body = (
        f"<p>Sampled with temperature {sampling.temperature}, top-k {sampling.top_k}, at most "
        f"{max_new_tokens} new tokens, seed {seed}. Prompts in bold.</p>\n"
        + sample_section(f"Base model ({pretrained_dir}): raw continuation", base_results)
        + sample_section(f"SFT model ({sft_dir}): chat template", chat_results)
    )
    write_html(path, "Generated samples", body)
