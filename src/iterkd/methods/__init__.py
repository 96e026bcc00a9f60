"""Distillation methods: STAND, INPD, PERsD (-refine, -combine) data construction; IterKD Stage I pairs."""

from iterkd.methods.pairs import PairStats, build_pairs, collect_pairs
from iterkd.methods.persd import METHODS, REGISTRY, DataStats, Method, build_examples, collect, write_dataset

__all__ = [
    "METHODS",
    "REGISTRY",
    "DataStats",
    "Method",
    "PairStats",
    "build_examples",
    "build_pairs",
    "collect",
    "collect_pairs",
    "write_dataset",
]
