"""Tokenizer training on Parquet, FIM, token shards and the tokenize pipeline."""

import importlib.util
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from lingcoder.data.fim import FimConfig, encode_document, fim_layout
from lingcoder.data.shards import ShardWriter, TokenIndex, write_index
from lingcoder.data.tokenize import TokenizeConfig, discover_sources, tokenize
from lingcoder.data.tokenizer import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX
from lingcoder.errors import LingcoderError


def test_fim_is_deterministic_per_document_and_rearranges_the_text():
    text = "def add(a, b):\n    return a + b\n"
    config = FimConfig(rate=1.0, spm_rate=0.5, seed=3)
    layouts = {doc_id: fim_layout(text, doc_id, config) for doc_id in map(str, range(40))}
    assert layouts == {doc_id: fim_layout(text, doc_id, config) for doc_id in map(str, range(40))}
    kinds = {kind for kind, _ in layouts.values()}
    assert kinds == {"psm", "spm"}
    for kind, pieces in layouts.values():
        if kind == "psm":
            _, prefix, _, suffix, _, middle = pieces
            assert prefix + middle + suffix == text
        else:
            _, _, suffix, _, prefix_middle = pieces
            assert prefix_middle + suffix == text
    assert fim_layout(text, "x", FimConfig(rate=0.0)) is None
    rate = np.mean([fim_layout(text, str(i), FimConfig(rate=0.3)) is not None for i in range(2000)])
    assert 0.25 < rate < 0.35


def test_fim_tokens_use_the_special_tokens(tokenizer_dir):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    ids, kind = encode_document(tok, "x = 1\ny = 2\n", "doc", FimConfig(rate=1.0, spm_rate=0.0))
    assert kind == "psm"
    assert ids[0] == tok.token_to_id(FIM_PREFIX)
    assert tok.token_to_id(FIM_SUFFIX) in ids and tok.token_to_id(FIM_MIDDLE) in ids
    with pytest.raises(LingcoderError, match="fim.rate must be in"):
        FimConfig(rate=1.5)


def test_shards_round_trip_and_windows_cross_shard_boundaries(tmp_path):
    for rank, docs in enumerate([[[0, 5, 6], [0, 7]], [[0, 8, 9, 10]]]):
        for split in ("train", "val"):
            writer = ShardWriter(tmp_path / "src" / split, rank, np.dtype(np.uint16))
            for doc in docs:
                writer.add(doc)
            writer.close()
    write_index(tmp_path, vocab_size=100, eos_token_id=0, settings={})
    index = TokenIndex(tmp_path)
    stream = index.stream("src", "train")
    assert stream.num_tokens == 9 and index.num_tokens("src", "val") == 9
    assert stream.window(3, 5).tolist() == [0, 7, 0, 8, 9]
    assert stream.document_ids(0, 9).tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    (tmp_path / "src" / "train" / "00001.bin").unlink()
    with pytest.raises(LingcoderError, match="shard file 00001.bin listed in index.json is missing"):
        index.stream("src", "train")


def test_tokenize_discovers_sources_splits_documents_and_is_worker_independent(curated, tokenizer_dir, tmp_path):
    assert sorted(discover_sources(curated)) == ["file-high", "repo"]
    one = tokenize(TokenizeConfig(tokenizer_dir, tmp_path / "w1", curated=curated, val_fraction=0.1, workers=1))
    two = tokenize(TokenizeConfig(tokenizer_dir, tmp_path / "w2", curated=curated, val_fraction=0.1, workers=2))
    assert one["sources"] == two["sources"]
    for name in one["sources"]:
        for split in ("train", "val"):
            for shard in one["sources"][name][split]["shards"]:
                assert (tmp_path / "w1" / shard).read_bytes() == (tmp_path / "w2" / shard).read_bytes()
    high = one["sources"]["file-high"]
    assert high["train"]["documents"] + high["val"]["documents"] == 90
    assert 0 < high["val"]["documents"] < 25
    assert (tmp_path / "w1" / "tokenizer.json").is_file()
    index = TokenIndex(tmp_path / "w1")
    stream = index.stream("file-high", "train")
    starts = stream.doc_starts
    assert all(stream.window(int(s), 1)[0] == index.eos_token_id for s in starts)  # each document opens with EOS


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install lingcoder[ray])"
)
def test_ray_executor_tokenizes_exactly_as_the_local_one(curated, tokenizer_dir, tmp_path):
    import ray

    local = tokenize(TokenizeConfig(tokenizer_dir, tmp_path / "local", curated=curated, val_fraction=0.1, workers=2))
    try:
        on_ray = tokenize(TokenizeConfig(tokenizer_dir, tmp_path / "ray", curated=curated, val_fraction=0.1, workers=2,
                                         executor="ray"))
    finally:
        ray.shutdown()
    assert on_ray["sources"] == local["sources"]
    shards = [s for source in local["sources"].values() for split in ("train", "val") for s in source[split]["shards"]]
    assert shards
    for shard in shards:
        assert (tmp_path / "ray" / shard).read_bytes() == (tmp_path / "local" / shard).read_bytes()


def test_plain_tokenization_decodes_back_to_the_documents(curated, tokenizer_dir, tmp_path):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    tokenize(TokenizeConfig(tokenizer_dir, tmp_path / "plain", fim_rate=0.0, val_fraction=0.0, workers=1,
                            sources=[f"repo={curated / 'repo'}"]))
    index = TokenIndex(tmp_path / "plain")
    assert index.sources == ["repo"]
    stream = index.stream("repo", "train")
    bounds = [*stream.doc_starts.tolist(), stream.num_tokens]
    decoded = [tok.decode(stream.window(a + 1, b - a - 1).tolist(), skip_special_tokens=False)
               for a, b in zip(bounds, bounds[1:], strict=False)]
    original = pq.read_table(curated / "repo" / "00000.parquet").column("content").to_pylist()
    assert decoded == original
    assert json.loads((tmp_path / "plain" / "index.json").read_text())["fim"]["rate"] == 0.0


def test_tokenize_bad_input_is_clear(curated, tokenizer_dir, tmp_path):
    with pytest.raises(LingcoderError, match="curated directory not found"):
        tokenize(TokenizeConfig(tokenizer_dir, tmp_path / "t", curated=tmp_path / "nope"))
    with pytest.raises(LingcoderError, match="no tokenizer.json"):
        tokenize(TokenizeConfig(tmp_path, tmp_path / "t", curated=curated))
    with pytest.raises(LingcoderError, match="expected NAME=PATH"):
        tokenize(TokenizeConfig(tokenizer_dir, tmp_path / "t", sources=["justapath"]))
    with pytest.raises(LingcoderError, match="no index.json"):
        TokenIndex(tmp_path)
