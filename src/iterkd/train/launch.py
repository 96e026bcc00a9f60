"""``run_training``: a training config run in this process, or as ``iterkd train`` under ``accelerate launch``
(several processes or GPUs, DeepSpeed) for callers that run in one process themselves (``iterkd distill``'s
``train_launcher``, for SFT methods and IterKD rounds alike)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from iterkd.errors import UserError
from iterkd.process import die_with_parent, kill_on_parent_death
from iterkd.train.config import TrainConfig


def run_training(tcfg: TrainConfig, launcher: str | None = None) -> Path:
    """Train ``tcfg`` (SFT, or preference training for a PreferenceConfig) in this process, or under ``accelerate
    launch --config_file launcher`` when a launcher is named; return the final model directory."""
    if launcher is None:
        from iterkd.train import train

        return train(tcfg)
    return launch_training(tcfg, launcher)


def launch_training(tcfg: TrainConfig, launcher: str) -> Path:
    """``iterkd train`` under ``accelerate launch --config_file launcher`` (its output shown as it comes), with the
    resolved training config written first (a PreferenceConfig: ``--objective preference``); returns the final
    model directory."""
    from iterkd.models.llama_server import free_port

    if not Path(launcher).is_file():
        raise UserError(f"train_launcher: {launcher}: no such accelerate config file (see configs/accelerate/)")
    out = tcfg.output_path
    out.mkdir(parents=True, exist_ok=True)
    tcfg.save(out / "launch_config.yaml")
    # a free rendezvous port: two runs on one machine must not meet on accelerate's default 29500
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(launcher),
           "--main_process_port", str(free_port()), "-m", "iterkd", "train", "--objective", tcfg.objective,
           "--config", str(out / "launch_config.yaml")]  # fmt: skip
    # killed with this process (kill -9 of `iterkd distill`): accelerate stops its ranks on SIGTERM, and each rank
    # also dies with accelerate (die_with_launcher)
    code = subprocess.run(cmd, preexec_fn=die_with_parent).returncode
    if code != 0 or not (tcfg.final_dir / "config.json").exists():
        raise UserError(f"training under accelerate failed (exit {code}; its output is above): {' '.join(cmd)}")
    return tcfg.final_dir


def die_with_launcher() -> None:
    """In a rank of ``accelerate launch`` / torchrun (``LOCAL_RANK`` set): die when the launcher dies. torchrun starts
    each rank in a session of its own, so a launcher killed with kill -9 would leave its ranks running, writing
    checkpoints beside the resumed run."""
    if "LOCAL_RANK" in os.environ:
        kill_on_parent_death()
