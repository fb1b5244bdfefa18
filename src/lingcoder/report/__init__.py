"""The HTML report of a run directory: plots of curation, training, experts, evaluation, the model
card and experiments (`lingcoder report RUN_DIR`)."""

from lingcoder.report.report import write_report

__all__ = ["write_report"]
