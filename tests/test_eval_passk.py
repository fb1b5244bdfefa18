from fractions import Fraction
from math import comb

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lingcoder.errors import LingcoderError
from lingcoder.evaluate.passk import mean_pass_at_k, pass_at_k


def exact(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(comb(n - c, k), comb(n, k))


@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_matches_exact_binomial_formula(args):
    n, c, k = args
    assert pass_at_k(n, c, k) == pytest.approx(float(exact(n, c, k)), abs=1e-12)


def test_known_values_and_large_n_is_stable():
    assert pass_at_k(1, 1, 1) == 1.0
    assert pass_at_k(1, 0, 1) == 0.0
    assert pass_at_k(10, 5, 1) == pytest.approx(0.5)
    assert pass_at_k(10, 1, 10) == 1.0
    # C(100000, 500) overflows floats; the product form does not.
    assert pass_at_k(100_000, 10, 500) == pytest.approx(float(exact(100_000, 10, 500)), rel=1e-9)


def test_bad_input_is_an_error():
    with pytest.raises(LingcoderError, match="k <= n"):
        pass_at_k(3, 1, 5)
    with pytest.raises(LingcoderError):
        pass_at_k(3, 4, 1)


def test_mean_over_tasks_needs_k_samples_everywhere():
    assert mean_pass_at_k([(2, 1), (2, 2)], 1) == pytest.approx(0.75)
    assert mean_pass_at_k([(2, 1), (1, 1)], 2) is None
