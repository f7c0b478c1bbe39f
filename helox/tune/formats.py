"""The shapes public instruction and preference datasets come in, as Helox conversations.

Each function takes one JSON record and returns `[{"role", "content"}, ...]` messages in
the roles of the chat template, or raises ValueError naming the field that is wrong, so
that the reader skips the record with its file and line instead of misreading it.

Instruction records (`parse_example`):
- chat (OpenAI, Hugging Face): `{"messages": [{"role", "content"}, ...]}`, where a content
  may also be a list of `{"type": "text", "text"}` parts, and an assistant message with
  OpenAI's `"weight": 0` is context, not trained on;
- ShareGPT: `{"conversations": [{"from": "system" | "human" | "gpt", "value"}, ...]}`;
- prompt-completion (TRL): `{"prompt", "completion"}`, each a string or messages;
- Alpaca and Dolly: `{"instruction", "input" | "context", "response" | "output"}`.

Preference records (`parse_preference`) give (prompt messages, chosen, rejected):
- `{"prompt": str | messages, "chosen": str, "rejected": str}`, or `"messages"` for the prompt;
- TRL and UltraFeedback: `"chosen"` and `"rejected"` as messages, either the answer alone
  (after `"prompt"`) or the whole conversation, which then gives the prompt;
- Anthropic HH: `"chosen"` and `"rejected"` as "\\n\\nHuman: ...\\n\\nAssistant: ..." transcripts,
  or the answers alone after such a `"prompt"`.
"""

from __future__ import annotations

import json
import re

from helox.tokens.chat import ROLES, is_trained, pair_to_messages

Messages = list[dict[str, str | int]]

# ShareGPT's speakers; the original dumps also name the assistant chatgpt, bing or bard.
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
}
HH_MARKER = re.compile(r"\n\n(Human|Assistant):")


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def is_text(value: object) -> bool:
    """Whether `value` is a string with something besides whitespace."""
    return isinstance(value, str) and bool(value.strip())


def message_text(content: object, where: str) -> str:
    """A message's content as text: a string, or the text parts of a list joined."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ValueError(f"{where} needs text content, got {json_type(content)}")
    texts = []
    for part in content:
        if not isinstance(part, dict) or not isinstance(part.get("text"), str):
            kind = part.get("type") if isinstance(part, dict) else json_type(part)
            raise ValueError(f'{where} has a "{kind}" part; only text parts can be rendered')
        texts.append(part["text"])
    return "".join(texts)


def parse_messages(messages: object, field: str = "messages") -> Messages:
    """A list of `{"role", "content"}` messages; raises ValueError naming the message at fault."""
    if not isinstance(messages, list) or not messages:
        raise ValueError(f'"{field}" must be a non-empty list of messages')
    parsed = []
    for index, message in enumerate(messages):
        where = f'"{field}"[{index}]'
        if not isinstance(message, dict):
            raise ValueError(f"{where} must be an object, got {json_type(message)}")
        role = message.get("role")
        if role not in ROLES:
            raise ValueError(
                f"{where} has role {json.dumps(role)}; the chat template has {', '.join(ROLES)}"
            )
        if message.get("tool_calls"):
            raise ValueError(f"{where} holds tool calls, which the chat template cannot render")
        content = message_text(message.get("content"), where)
        if role == "assistant" and not content.strip():
            raise ValueError(f"{where} is an assistant turn with empty content")
        weight = message.get("weight", 1)
        if weight not in (0, 1):
            raise ValueError(f'{where} has "weight" {json.dumps(weight)}; it may be 0 or 1')
        parsed.append({"role": role, "content": content, **({"weight": 0} if weight == 0 else {})})
    return parsed


def parse_sharegpt(turns: object) -> Messages:
    """ShareGPT's `[{"from", "value"}, ...]` turns as messages."""
    if not isinstance(turns, list) or not turns:
        raise ValueError('"conversations" must be a non-empty list of turns')
    messages = []
    for index, turn in enumerate(turns):
        speaker = turn.get("from") if isinstance(turn, dict) else None
        if speaker not in SHAREGPT_ROLES:
            raise ValueError(
                f'"conversations"[{index}] is from {json.dumps(speaker)}; '
                f"expected one of {', '.join(SHAREGPT_ROLES)}"
            )
        messages.append({"role": SHAREGPT_ROLES[speaker], "content": turn.get("value")})
    return parse_messages(messages, "conversations")


def text_field(record: dict, names: tuple[str, ...]) -> str:
    """The string under whichever of `names` the record has ("" when none); two that differ
    are refused rather than one silently dropped."""
    values = {name: record[name] for name in names if record.get(name) is not None}
    for name, value in values.items():
        if not isinstance(value, str):
            raise ValueError(f'"{name}" must be a string, got {json_type(value)}')
    if len(set(values.values())) > 1:
        raise ValueError(f"{' and '.join(map(json.dumps, values))} differ; keep one of them")
    return next(iter(values.values()), "")


def parse_instruction_pair(record: dict) -> Messages:
    """Alpaca's `{"instruction", "input", "output"}` or Dolly's `{"instruction", "context",
    "response"}` as a user turn (the input after the instruction) and the answer."""
    instruction = text_field(record, ("instruction",))
    response = text_field(record, ("response", "output"))
    if not instruction.strip():
        raise ValueError('missing or empty string field "instruction"')
    if not response.strip():
        raise ValueError('missing or empty string field "response" (or Alpaca\'s "output")')
    return pair_to_messages(instruction, response, text_field(record, ("input", "context")))


def parse_turns(value: object, field: str, role: str) -> Messages:
    """A string (one turn of `role`) or a list of messages."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f'"{field}" is empty')
        return [{"role": role, "content": value}]
    return parse_messages(value, field)


def parse_example(record: object) -> Messages:
    """One instruction record in any of the module's formats as a conversation."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {json_type(record)}")
    if "messages" in record:
        messages = parse_messages(record["messages"])
    elif "conversations" in record:
        messages = parse_sharegpt(record["conversations"])
    elif "completion" in record:
        prompt = parse_turns(record.get("prompt"), "prompt", "user")
        messages = prompt + parse_turns(record["completion"], "completion", "assistant")
    elif "instruction" in record:
        messages = parse_instruction_pair(record)
    else:
        raise ValueError(
            f"no instruction format has the keys {sorted(record)[:6]}: expected "
            '"messages", "conversations", "prompt" and "completion", or "instruction" '
            'with "response" or "output"'
        )
    if not any(is_trained(m) for m in messages):
        raise ValueError("no assistant turn to learn from")
    return messages


def hh_transcript(text: str, field: str) -> Messages:
    """An Anthropic HH "\\n\\nHuman: ...\\n\\nAssistant: ..." transcript as messages."""
    pieces = HH_MARKER.split("\n\n" + text.lstrip())
    speakers, contents = pieces[1::2], pieces[2::2]
    messages = [
        {"role": "user" if speaker == "Human" else "assistant", "content": content.strip()}
        for speaker, content in zip(speakers, contents, strict=True)
    ]
    return parse_messages(messages, field)


def is_hh(text: object) -> bool:
    """Whether `text` is an Anthropic HH transcript."""
    return isinstance(text, str) and text.lstrip().startswith("Human:")


def prompt_turns(prompt: object) -> Messages:
    """A `"prompt"`: messages, an HH transcript that ends by opening the assistant's turn, or
    a string that is the user's turn."""
    if is_hh(prompt):
        return hh_transcript(prompt.rstrip().removesuffix("Assistant:"), "prompt")
    return parse_turns(prompt, "prompt", "user")


def given_prompt(record: dict) -> Messages | None:
    """The prompt that `"messages"` or `"prompt"` gives, or None when the record has neither."""
    if "messages" in record:
        return parse_messages(record["messages"])
    if record.get("prompt") is None:
        return None
    return prompt_turns(record["prompt"])


def answered_conversation(record: dict, field: str) -> Messages:
    """The whole conversation that ends in `record[field]`, a list of messages: either the
    answer alone, put after the record's prompt, or a conversation whose last question must
    be the `"prompt"` when there is one (a `"messages"` beside it, as UltraFeedback has, is
    the chosen conversation again)."""
    turns = parse_messages(record[field], field)
    if turns[-1]["role"] != "assistant":
        raise ValueError(f'"{field}" must end with the assistant answer')
    if turns[0]["role"] == "assistant":
        if len(turns) > 1:
            raise ValueError(f'"{field}" must be one answer or a conversation ending in one')
        prompt = given_prompt(record)
        if prompt is None:
            raise ValueError(f'"{field}" is an answer alone, and there is no "prompt"')
        return prompt + turns
    if record.get("prompt") is not None:
        asked = prompt_turns(record["prompt"])[-1]["content"]
        if asked.strip() != turns[-2]["content"].strip():
            raise ValueError(f'"prompt" is not the turn that "{field}" answers')
    return turns


def parse_preference(record: object) -> tuple[Messages, str, str]:
    """One preference record in any of the module's formats as (prompt, chosen, rejected)."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {json_type(record)}")
    fields = ("chosen", "rejected")
    values = [record.get(field) for field in fields]
    if any(isinstance(value, list) for value in values):
        chosen, rejected = (answered_conversation(record, field) for field in fields)
    elif missing := [f for f, v in zip(fields, values, strict=True) if not is_text(v)]:
        raise ValueError(f'missing or empty string field "{missing[0]}"')
    elif given_prompt(record) is None and all(is_hh(value) for value in values):
        chosen, rejected = (hh_transcript(record[field], field) for field in fields)
    elif (prompt := given_prompt(record)) is None:
        raise ValueError('needs a non-empty string "prompt" or a "messages" list')
    else:  # after an HH prompt's "Assistant:", the space belongs to the marker
        answers = [v.removeprefix(" ") if is_hh(record.get("prompt")) else v for v in values]
        chosen, rejected = ([*prompt, {"role": "assistant", "content": a}] for a in answers)
    if chosen[:-1] != rejected[:-1]:
        raise ValueError('"chosen" and "rejected" differ before their last turn')
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise ValueError('"chosen" and "rejected" must each end with an assistant answer')
    prompt = chosen[:-1]
    if not prompt or prompt[-1]["role"] != "user":
        raise ValueError("the prompt must end with the user turn that the answers reply to")
    if chosen[-1]["content"] == rejected[-1]["content"]:
        raise ValueError('"chosen" and "rejected" are the same text')
    return prompt, chosen[-1]["content"], rejected[-1]["content"]
