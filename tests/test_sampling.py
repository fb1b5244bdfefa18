"""Sampling settings and stop strings (`lingcoder.generation.sampling`), shared by every generator."""

import pytest

from lingcoder.errors import LingcoderError
from lingcoder.generation.sampling import SamplingParams, cut_at_stop


def test_cut_at_stop_cuts_at_the_earliest_stop():
    assert cut_at_stop("abc\ndef x\n\ny", ["\n\n", "\ndef "]) == "abc"
    assert cut_at_stop("abc", ["zz"]) == "abc"


def test_cut_at_stop_ignores_empty_stop_strings():
    assert cut_at_stop("abc", [""]) == "abc"
    assert cut_at_stop("abc", ("", "c")) == "ab"


def test_sampling_params_refuse_bad_settings_by_name():
    with pytest.raises(LingcoderError, match="max_tokens=0"):
        SamplingParams(max_tokens=0)
    with pytest.raises(LingcoderError, match="top_k must be >= 0"):
        SamplingParams(top_k=-1)
    with pytest.raises(LingcoderError, match="would be identical"):
        SamplingParams(n=2)
    assert SamplingParams(n=2, temperature=0.7).n == 2
