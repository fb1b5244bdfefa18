"""A checkpoint's chat template, rendered as transformers does.

The template is read where transformers reads it: `chat_template.jinja` (what transformers 5 writes)
when the directory has one, else the `chat_template` string in `tokenizer_config.json`, whose special
tokens the template may use either way.

Rendering uses Jinja's immutable sandbox with `trim_blocks`/`lstrip_blocks` and the variables
transformers passes (`messages`, `add_generation_prompt`, the special tokens, `raise_exception`), so
a prompt rendered here equals `tokenizer.apply_chat_template(messages, add_generation_prompt=True)`.
"""

from __future__ import annotations

import json
from pathlib import Path

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from lingcoder.data.tokenizer import EOS, ROLE_OPEN
from lingcoder.errors import LingcoderError

CHAT_STOPS = (EOS, ROLE_OPEN)  # the end of the assistant's turn, or the start of another one


class ChatTemplate:
    def __init__(self, source: str, special_tokens: dict[str, str | None]):
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.globals["raise_exception"] = _raise_exception
        try:
            self.template = environment.from_string(source)
        except TemplateError as exc:
            raise LingcoderError(f"chat template does not compile: {exc}") from None
        self.source = source
        self.special_tokens = special_tokens

    @classmethod
    def from_model_dir(cls, model_dir: str | Path) -> ChatTemplate | None:
        """The template of `model_dir` (`chat_template.jinja` or tokenizer_config.json), or None when it has none."""
        config_path = Path(model_dir) / "tokenizer_config.json"
        config = _read_json(config_path) if config_path.is_file() else {}
        jinja_path = Path(model_dir) / "chat_template.jinja"
        if jinja_path.is_file():
            try:
                source = jinja_path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise LingcoderError(f"{jinja_path}: unreadable ({exc})") from None
        else:
            source = config.get("chat_template")
            if source is not None and not isinstance(source, str):
                raise LingcoderError(f"{config_path}: only a single chat_template string is supported")
        if not source:
            return None
        tokens = {name: _token_text(config.get(name)) for name in ("bos_token", "eos_token", "pad_token")}
        return cls(source, tokens)

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The prompt for the assistant's next turn (or, without the generation prompt, the conversation)."""
        try:
            return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                        **self.special_tokens)
        except TemplateError as exc:
            raise LingcoderError(f"the chat template cannot render these messages: {exc}") from None


def _read_json(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LingcoderError(f"{path}: unreadable ({exc})") from None
    if not isinstance(config, dict):
        raise LingcoderError(f"{path}: expected a JSON object, found {type(config).__name__}")
    return config


def _token_text(token) -> str | None:
    return token.get("content") if isinstance(token, dict) else token  # AddedToken dicts or plain strings


def _raise_exception(message: str):
    raise TemplateError(message)
