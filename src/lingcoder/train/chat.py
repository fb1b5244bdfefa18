"""Conversations as training tokens, rendered with the checkpoint's own chat template (read by
`generation.chat_template`, as the server and the evaluation backends render prompts), with a mask of the
tokens the model must learn to write.

The template is rendered for growing prefixes of the conversation, the way `transformers` finds assistant
tokens: the text an assistant turn adds after the generation prompt (`<role>ASSISTANT</role>`) is its
content and end-of-turn token (`<|endoftext|>`), the only trained text; everything else (system and human
turns, role headers) is context. Each piece is tokenized on its own and the concatenation is checked
against tokenizing the whole text, so the tokens are exactly those inference sees.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from lingcoder.errors import LingcoderError
from lingcoder.generation.chat_template import ChatTemplate
from lingcoder.generation.generate import load_tokenizer

# Ling roles and OpenAI roles -> the OpenAI names chat templates are written for.
ROLES = {"SYSTEM": "system", "HUMAN": "user", "USER": "user", "ASSISTANT": "assistant"}


class BadRecord(Exception):
    """A training record that cannot be used; `kind` groups the counts, the message says what is wrong."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


@dataclass
class Rendered:
    ids: np.ndarray  # [L] int64 token ids
    trained: np.ndarray  # [L] bool: the loss is on predicting this token (never the first one)

    def __len__(self) -> int:
        return len(self.ids)


class ChatRenderer:
    def __init__(self, tokenizer: Tokenizer, template: ChatTemplate, fingerprint: str):
        self.tokenizer = tokenizer
        self.template = template
        self.fingerprint = fingerprint  # changes whenever the tokens of a conversation could (tokenizer, template)
        self.special_tokens = [t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special]

    @classmethod
    def from_checkpoint(cls, directory: str | Path) -> ChatRenderer:
        """The tokenizer and chat template a checkpoint directory carries, as inference reads them."""
        directory = Path(directory)
        template = ChatTemplate.from_model_dir(directory)
        if template is None:
            raise LingcoderError(f"{directory}: no chat template (chat_template.jinja or tokenizer_config.json); "
                                 "conversations are rendered with the checkpoint's own template, as inference does")
        tokenizer = load_tokenizer(directory)
        rendering = json.dumps([template.source, template.special_tokens]).encode()
        fingerprint = hashlib.sha256((directory / "tokenizer.json").read_bytes() + rendering).hexdigest()[:16]
        return cls(tokenizer, template, fingerprint)

    def render(self, messages: list[dict]) -> Rendered:
        """Tokens and trained-token mask of a conversation of {"role": system|user|assistant, "content"}."""
        for i, message in enumerate(messages):
            for token in self.special_tokens:
                if token in message["content"]:
                    raise BadRecord("special token in content", f"message {i} contains {token!r}")
        pieces: list[tuple[str, bool]] = []
        done = ""
        for i, message in enumerate(messages):
            if message["role"] == "assistant":
                prompt = self.template.render(messages[:i], add_generation_prompt=True)
                pieces.append((_after(done, prompt), False))
                done = prompt
            text = self.template.render(messages[: i + 1], add_generation_prompt=False)
            pieces.append((_after(done, text), message["role"] == "assistant"))
            done = text
        ids, trained = [], []
        for text, is_trained in pieces:
            piece = self.tokenizer.encode(text, add_special_tokens=False).ids
            ids += piece
            trained += [is_trained] * len(piece)
        if ids != self.tokenizer.encode(done, add_special_tokens=False).ids:
            raise BadRecord("turn boundary", "tokens merge across a turn boundary of the chat template")
        if trained:
            trained[0] = False  # nothing precedes the first token to predict it from
        return Rendered(np.asarray(ids, dtype=np.int64), np.asarray(trained, dtype=bool))


def _after(prefix: str, text: str) -> str:
    if not text.startswith(prefix):
        raise LingcoderError("chat template: rendering one more message changes the text before it, so the "
                             "assistant tokens cannot be found; use a template that renders turn by turn")
    return text[len(prefix):]


def conversation(record: dict) -> list[dict]:
    """An SFT record's `messages` (Ling: HUMAN/ASSISTANT/SYSTEM; OpenAI: system/user/assistant), with
    OpenAI role names; raises BadRecord for anything unusable."""
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRecord("no messages", "`messages` must be a non-empty list")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRecord("bad message", f"message {i} has no string `role`")
        role = ROLES.get(message["role"].upper())
        if role is None:
            raise BadRecord("unknown role", f"message {i} has role {message['role']!r} (known: HUMAN, "
                                            "ASSISTANT, SYSTEM, user, assistant, system)")
        content = message.get("content")
        if not isinstance(content, str):
            raise BadRecord("bad message", f"message {i} `content` is not a string")
        if role == "assistant" and not content.strip():
            raise BadRecord("empty answer", f"message {i} (assistant) is empty")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in out):
        raise BadRecord("no assistant turn", "nothing to learn from")
    return out


def preference_pair(record: dict) -> tuple[list[dict], list[dict]]:
    """A DPO record's (chosen, rejected) conversations: the prompt as the human turn, each answer as the
    assistant's; raises BadRecord for anything unusable."""
    for field in ("prompt", "chosen", "rejected"):
        if not isinstance(record.get(field), str) or not record[field].strip():
            raise BadRecord(f"no {field}", f"`{field}` must be a non-empty string")
    if record["chosen"] == record["rejected"]:
        raise BadRecord("chosen equals rejected", "the pair prefers nothing")
    prompt = {"role": "user", "content": record["prompt"]}
    return ([prompt, {"role": "assistant", "content": record["chosen"]}],
            [prompt, {"role": "assistant", "content": record["rejected"]}])
