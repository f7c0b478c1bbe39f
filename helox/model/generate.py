"""Sampling text from a model folder, raw or through its chat template.

Raw text starts as training documents do (after BOS where the model adds one) and stops at
EOS or generation_config's stop ids; a reply is rendered with the folder's chat format and
also stops at the end of the turn.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from helox.common.io import read_json
from helox.model.config import sequence_limit
from helox.model.device import DeviceManager
from helox.model.folder import CHAT_STAGES, load_final
from helox.tokens.chat import ChatFormat
from helox.tokens.chat_setup import chat_format
from helox.tokens.vocab import load_tokenizer

# Tokens kept free for the answer when old turns must leave a long conversation.
ANSWER_ROOM = 32


@dataclass
class SamplingConfig:
    max_new_tokens: int = 128
    temperature: float = 0.8
    top_k: int | None = 50
    top_p: float | None = None
    seed: int = 0


def is_chat_model(folder: str | os.PathLike) -> bool:
    """True for a folder written by SFT or DPO, whose model expects the chat template."""
    metrics_path = Path(folder) / "metrics.json"
    return metrics_path.is_file() and read_json(metrics_path).get("stage") in CHAT_STAGES


class Generator:
    """A loaded model folder that turns prompts into text."""

    def __init__(self, folder: str | os.PathLike, device: str = "auto"):
        self.folder = Path(folder)
        self.device = DeviceManager(device).device
        self.model, self.config = load_final(folder, self.device)
        self.model.eval()
        self.tokenizer = load_tokenizer(folder)

    @cached_property
    def chat(self) -> ChatFormat:
        """The folder's chat format (helox.tokens.chat_setup.chat_format), made on first use."""
        return chat_format(self.tokenizer, str(self.folder))

    def _sample(
        self, prompt_ids: list[int], sampling: SamplingConfig, stop_ids: tuple[int, ...]
    ) -> list[int]:
        longest, key = sequence_limit(self.config)
        room = longest - len(prompt_ids)
        if room <= 0:
            raise ValueError(
                f"the prompt is {len(prompt_ids)} tokens; the model sees at most "
                f"{longest} (model.{key}), with room for one new token: shorten the prompt"
            )
        generator = torch.Generator(device=self.device).manual_seed(sampling.seed)
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.device)
        output = self.model.generate(
            ids,
            max_new_tokens=min(sampling.max_new_tokens, room),
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            eos_id=stop_ids,
            generator=generator,
        )
        new_ids = output[0, len(prompt_ids) :].tolist()
        return until_stop(new_ids, stop_ids)

    def complete(self, prompt: str, sampling: SamplingConfig) -> str:
        """Continue raw text; returns the prompt followed by the continuation. An empty prompt
        starts a new document: after the token that precedes each one in training."""
        tokenizer = self.tokenizer
        ids = tokenizer.text_start() + tokenizer.encode(prompt)
        new_ids = self._sample(ids or tokenizer.context_start(), sampling, tokenizer.stop_ids)
        return prompt + tokenizer.decode(new_ids)

    def reply(self, messages: list[dict[str, str]], sampling: SamplingConfig) -> str:
        """The assistant's next turn in a conversation, rendered with the chat template.

        When the conversation no longer fits the model's positions with room for the answer,
        its oldest turns after any system message are left out, as a chat window does.
        """
        room = min(sampling.max_new_tokens, ANSWER_ROOM)
        kept = list(messages)
        prompt = self.chat.prompt(kept)
        while len(prompt) + room > sequence_limit(self.config)[0]:
            first = 1 if kept[0]["role"] == "system" else 0
            if len(kept) - first <= 1:
                break
            del kept[first]
            prompt = self.chat.prompt(kept)
        return self.tokenizer.decode(self._sample(prompt, sampling, self.chat.stop_ids))


def until_stop(ids: list[int], stop_ids: tuple[int, ...]) -> list[int]:
    """`ids` up to the first stop id, which is left out."""
    stop = next((i for i, token_id in enumerate(ids) if token_id in stop_ids), len(ids))
    return ids[:stop]
