"""Evaluation: pass@k, scoring sample files by execution, generating samples with a model."""

from iterkd.evaluate.check import format_table, print_table, score_samples, write_results
from iterkd.evaluate.samples import Sample, read_samples, write_samples
from iterkd.evaluate.stats import pass_at_k, pass_at_k_table

__all__ = [
    "Sample",
    "format_table",
    "pass_at_k",
    "pass_at_k_table",
    "print_table",
    "read_samples",
    "score_samples",
    "write_results",
    "write_samples",
]
