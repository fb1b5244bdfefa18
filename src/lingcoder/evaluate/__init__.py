"""Evaluation: benchmarks, a sandbox for model-written code, languages, pass@k, generation backends.

The paper's other benchmarks (LiveCodeBench, BigCodeBench, CRUXEval, HumanEvalFix, DS-1000, Spider,
HumanEval-infilling) live one per module in `suites`.

Entry points: `runner.run_eval` (the `lingcoder eval` command), `runner.evaluate_samples` (judge a
samples file) and `execution.run_program` (judge one program; reused to verify synthetic data).
"""
