"""Distillation methods: STAND, INPD, PERsD (-refine, -combine) data construction."""

from iterkd.methods.persd import METHODS, DataStats, build_examples, collect, write_dataset

__all__ = ["METHODS", "DataStats", "build_examples", "collect", "write_dataset"]
