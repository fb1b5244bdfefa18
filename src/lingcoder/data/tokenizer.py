"""Byte-level BPE tokenizer (HF `tokenizers`), code-aware, with the special tokens every stage uses.

Pre-tokenisation splits digits one by one and keeps runs of spaces (indentation) as their own
pieces (GPT-2's byte-level regex); being byte-level, every string round-trips losslessly.
On disk: `tokenizer.json` plus a `tokenizer_config.json` that `transformers` and vLLM read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from lingcoder.errors import LingcoderError

EOS = "<|endoftext|>"
FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD = "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>"
REPO_NAME, FILE_SEP = "<|repo_name|>", "<|file_sep|>"
ROLE_OPEN, ROLE_CLOSE = "<role>", "</role>"
# EOS first, so that it gets id 0 (the small presets' eos/pad id).
SPECIAL_TOKENS = [EOS, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD, REPO_NAME, FILE_SEP, ROLE_OPEN, ROLE_CLOSE]
# Ling's chat format: <role>SYSTEM</role>{system}<role>HUMAN</role>{user}<role>ASSISTANT</role>{answer}
CHAT_TEMPLATE = (  # OpenAI role names map to Ling's: user -> HUMAN
    "{% for message in messages %}{% set role = message['role'] | upper %}"
    "{% if role == 'USER' %}{% set role = 'HUMAN' %}{% endif %}"
    "<role>{{ role }}</role>{{ message['content'] }}{% if role == 'ASSISTANT' %}" + EOS + "{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<role>ASSISTANT</role>{% endif %}"
)


def new_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train byte-level BPE on `texts` up to `vocab_size` tokens (special tokens and 256 bytes included)."""
    minimum = len(SPECIAL_TOKENS) + 256
    if vocab_size < minimum:
        raise LingcoderError(f"vocab_size {vocab_size} is too small: byte-level BPE needs at least {minimum}")
    tokenizer = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, directory: str | Path, model_max_length: int = 16384) -> None:
    """`tokenizer.json` + `tokenizer_config.json` (transformers' PreTrainedTokenizerFast, Ling chat template)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": EOS,
        "pad_token": EOS,
        "bos_token": None,
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
        "additional_special_tokens": [t for t in SPECIAL_TOKENS if t != EOS],
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")

