"""Generation: batched KV-cache decoding equals plain full forwards, sampling controls, stop strings."""

import pytest
import torch

from lingcoder.data.tokenizer import save_tokenizer, train_tokenizer
from lingcoder.errors import LingcoderError
from lingcoder.generation.generate import generate, generate_ids, load_for_generation
from lingcoder.generation.sampling import SamplingParams, cut_at_stop
from lingcoder.model import BailingMoeForCausalLM

from .conftest import micro_config

GREEDY = SamplingParams(max_tokens=8)


def greedy_without_cache(model, prompt, steps):
    ids = list(prompt)
    for _ in range(steps):
        ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt):]


def test_batched_cached_greedy_equals_full_forward_per_prompt(micro_model):
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13, 14], [3]]
    batched = generate_ids(micro_model, prompts, GREEDY)
    for prompt, out in zip(prompts, batched, strict=True):
        assert out == greedy_without_cache(micro_model, prompt, 8)


def test_eos_ends_a_row_and_max_new_tokens_bounds_it(micro_model):
    prompt = [[5, 6, 7]]
    free = generate_ids(micro_model, prompt, GREEDY)[0]
    stopped = generate_ids(micro_model, prompt, GREEDY, eos_token_id=free[3])[0]
    assert stopped == free[: free.index(free[3])]
    assert len(generate_ids(micro_model, prompt, SamplingParams(max_tokens=3))[0]) == 3


def test_sampling_is_seeded_and_top_k_one_is_greedy(micro_model):
    prompts = [[1, 2, 3], [4, 5]]
    hot = SamplingParams(max_tokens=10, temperature=5.0, seed=7)
    first, again = generate_ids(micro_model, prompts, hot), generate_ids(micro_model, prompts, hot)
    assert first == again
    other_seed = generate_ids(micro_model, prompts, SamplingParams(max_tokens=10, temperature=5.0, seed=8))
    assert other_seed != first
    greedy = generate_ids(micro_model, prompts, SamplingParams(max_tokens=10))
    assert generate_ids(micro_model, prompts, SamplingParams(max_tokens=10, temperature=5.0, top_k=1,
                                                             seed=1)) == greedy
    assert generate_ids(micro_model, prompts, SamplingParams(max_tokens=10, temperature=5.0, top_p=1e-6,
                                                             seed=1)) == greedy


def test_top_p_keeps_the_smallest_set_reaching_p():
    from lingcoder.generation.generate import sample_next

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    params = SamplingParams(temperature=1.0, top_p=0.7)
    gen = torch.Generator().manual_seed(0)
    drawn = {int(sample_next(logits, params, gen)) for _ in range(300)}
    assert drawn == {0, 1}


@pytest.mark.parametrize(
    ("prompts", "params", "message"),
    [
        ([[1, 2]], SamplingParams(max_tokens=300), "exceeds the model's max_position_embeddings"),
        ([[1, 500]], GREEDY, "token id 500 is outside the model's vocabulary"),
        ([[]], GREEDY, "at least one token"),
    ],
)
def test_bad_requests_are_clear_errors(micro_model, prompts, params, message):
    with pytest.raises(LingcoderError, match=message):
        generate_ids(micro_model, prompts, params)


def test_bad_sampling_params_are_clear_errors():
    with pytest.raises(LingcoderError, match="top_p must be in"):
        SamplingParams(top_p=0)
    with pytest.raises(LingcoderError, match="temperature must be >= 0"):
        SamplingParams(temperature=-1)


def test_text_generation_from_a_checkpoint_directory_with_stop_strings(tmp_path):
    texts = ["def add(a, b):\n    return a + b\n\n"] * 20 + ["x = [1, 2, 3]\n"] * 5
    tokenizer = train_tokenizer(texts, vocab_size=300)
    model = BailingMoeForCausalLM(micro_config(vocab_size=tokenizer.get_vocab_size()))
    model.save_pretrained(tmp_path / "ckpt")
    save_tokenizer(tokenizer, tmp_path / "ckpt", model_max_length=model.config.max_position_embeddings)
    model, tokenizer = load_for_generation(tmp_path / "ckpt")
    free = generate(model, tokenizer, ["def add", "x ="], max_new_tokens=12)
    assert len(free) == 2 and all(isinstance(t, str) for t in free)
    stop = free[0][2:4]
    cut = generate(model, tokenizer, ["def add"], max_new_tokens=12, stop=[stop])[0]
    assert stop not in cut and free[0].startswith(cut)
    assert cut_at_stop("abc\n\ndef", ["\n\n", "zz"]) == "abc"
    with pytest.raises(LingcoderError, match="no tokenizer.json"):
        (tmp_path / "ckpt" / "tokenizer.json").unlink()
        load_for_generation(tmp_path / "ckpt")
