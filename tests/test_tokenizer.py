"""The byte-level BPE tokenizer: lossless round trips, code-aware splitting, special tokens, HF files."""

import json

import pytest
from tokenizers import Tokenizer

from lingcoder.data.tokenizer import EOS, FILE_SEP, SPECIAL_TOKENS, save_tokenizer, train_tokenizer
from lingcoder.errors import LingcoderError

from .conftest import embedded_text


@pytest.fixture(scope="module")
def stdlib_tokenizer():
    return train_tokenizer(embedded_text(), vocab_size=1024)


def test_round_trip_is_lossless_on_embedded_code_and_odd_text(stdlib_tokenizer):
    odd = ["tab\tand  spaces   \n\t\n", "unicode: naïve café ∑ 🙂", "", "\r\n windows \r\n", "<|endoftext|> inline"]
    for text in [*embedded_text(), *odd]:
        assert stdlib_tokenizer.decode(stdlib_tokenizer.encode(text).ids, skip_special_tokens=False) == text


def test_digits_split_and_indentation_kept_as_tokens(stdlib_tokenizer):
    pieces = stdlib_tokenizer.encode("x = 2024\n        return x").tokens
    assert [p for p in pieces if p.strip("Ġ").isdigit()] == ["2", "0", "2", "4"]
    assert any(set(p) <= {"Ċ", "Ġ"} and p.count("Ġ") >= 4 for p in pieces)  # a run of indentation


def test_special_tokens_have_fixed_ids_and_encode_atomically(stdlib_tokenizer):
    assert [stdlib_tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert stdlib_tokenizer.token_to_id(EOS) == 0
    assert stdlib_tokenizer.encode(f"a{FILE_SEP}b").tokens == ["a", FILE_SEP, "b"]


def test_saved_files_load_back_and_describe_the_chat_template(stdlib_tokenizer, tmp_path):
    save_tokenizer(stdlib_tokenizer, tmp_path)
    again = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert again.encode("def f(): pass").ids == stdlib_tokenizer.encode("def f(): pass").ids
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast" and config["eos_token"] == EOS
    assert "<role>ASSISTANT</role>" in config["chat_template"]


def test_too_small_vocab_is_a_clear_error():
    with pytest.raises(LingcoderError, match="vocab_size 100 is too small"):
        train_tokenizer(["abc"], vocab_size=100)


def test_chat_template_renders_lings_format_from_openai_roles():
    import jinja2

    from lingcoder.data.tokenizer import CHAT_TEMPLATE

    template = jinja2.Environment().from_string(CHAT_TEMPLATE)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add 1 and 2."},
                {"role": "assistant", "content": "3"}, {"role": "HUMAN", "content": "Now 2 and 2."}]
    assert template.render(messages=messages, add_generation_prompt=True) == (
        "<role>SYSTEM</role>Be brief.<role>HUMAN</role>Add 1 and 2.<role>ASSISTANT</role>3<|endoftext|>"
        "<role>HUMAN</role>Now 2 and 2.<role>ASSISTANT</role>"
    )
