"""What every method's run shares for resuming safely: the check of a run directory's pinned stages before any
work (``resume_check``) and the evaluation stages of a model (``eval_stages``). Each method describes its stages
(``plan(cfg)``, a ``stages.Plan``) in its own module."""

from __future__ import annotations

from pathlib import Path

from iterkd.errors import UserError
from iterkd.io import atomic_write_text
from iterkd.pipeline.config import DistillConfig


def eval_stages(cfg: DistillConfig, model: str, out: Path, name: str, backend: str | None = None) -> list:
    """The evaluation stages of ``model`` in ``out/BENCH`` (pinned by each directory's generation_config.json)."""
    from dataclasses import asdict

    from iterkd.evaluate.run import benchmark_name
    from iterkd.stages import StagePin

    stages = []
    for ecfg in cfg.eval_configs():
        ecfg = ecfg.model_copy(update={"model": model, **({"backend": backend} if backend else {})})
        d = out / benchmark_name(ecfg.benchmark)
        stages.append(StagePin(f"{name}/{d.name}", (d / "generations.jsonl",), asdict(ecfg.generation_settings()),
                               file=d / "generation_config.json", assumed={"top_k": 0}, redo=f"delete {d}"))  # fmt: skip
    return stages


def resume_check(cfg: DistillConfig, plan_of, recorded_before: dict | None = None) -> None:
    """Before any work: refuse a rerun whose settings differ from those the run's records were made with (a run
    from before pins is pinned by its own config.yaml first), then record this run's config.yaml.

    ``recorded_before``: settings added after runs were recorded (dotted key -> what a config.yaml without the
    key meant, e.g. ``{"iterkd.dedup": "minhash"}``), so that a new default is not read into an old run."""
    import json

    import yaml

    from iterkd.pipeline.config import load_distill_config

    saved = Path(cfg.run_dir) / "config.yaml"

    def legacy():  # the settings the run recorded, for stages begun before pins were written
        if not saved.is_file():
            return None
        doc = yaml.safe_load(saved.read_text()) or {}
        missing = [
            f"{k}={v if isinstance(v, str) else json.dumps(v)}"
            for k, v in (recorded_before or {}).items()
            if not _has(doc, k)
        ]
        try:
            return plan_of(load_distill_config(saved, [f"run_dir={cfg.run_dir}", *missing]))
        except UserError as exc:
            raise UserError(f"{saved} (the settings of the run's records) no longer loads: {exc}") from None

    plan_of(cfg).check(legacy)
    atomic_write_text(saved, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _has(doc: dict, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return False
        doc = doc[part]
    return True
