"""Which pipeline runs a method. A pipeline is a module of ``iterkd.pipeline`` with

    run(cfg, progress) -> dict       run or resume the method in ``cfg.run_dir``; the summary it wrote
    plan(cfg) -> stages.Plan         every stage of the run and the settings it is pinned by
    format_table(summary) -> str     the table ``iterkd distill`` prints

Its entry here names the module, the training objective its ``train:`` section is checked as (``sft`` or
``preference``) and the layout of its run directory (``rounds``: one student per round, as ``iterkd report`` reads
it). A new method is one module plus its entry (modules are named, not imported: the registry imports
no pipeline, so config, pipelines and registry make no import cycle)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Pipeline:
    module: str  # e.g. "iterkd.pipeline.iterkd"
    objective: str  # the training objective its train: section is checked as
    rounds: bool = False  # its run directory holds rounds (RUN/rounds/rK/, a student per round): how reports read it

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


def pipelines() -> dict[str, Pipeline]:
    """Method name -> its pipeline: the PERsD family (STAND, INPD, PERsD and its variants) and IterKD."""
    from iterkd.methods.persd import METHODS

    persd = Pipeline("iterkd.pipeline.distill", "sft")
    return {**dict.fromkeys(METHODS, persd), "iterkd": Pipeline("iterkd.pipeline.iterkd", "preference", rounds=True)}


def pipeline(method: str) -> Pipeline:
    from iterkd.errors import UserError

    known = pipelines()
    if method not in known:
        raise UserError(f"unknown method {method!r}; choose one of {', '.join(known)}")
    return known[method]
