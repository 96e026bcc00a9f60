"""Pipeline: a whole distillation method in a resumable run directory (``iterkd distill``)."""

from iterkd.pipeline.config import DistillConfig, load_distill_config
from iterkd.pipeline.distill import format_summary, run_distill

__all__ = ["DistillConfig", "format_summary", "load_distill_config", "run_distill"]
