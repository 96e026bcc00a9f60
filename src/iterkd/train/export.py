"""Export a trained (merged) student to GGUF, so llama.cpp evaluates it several times faster than transformers
on a CPU. The converter is llama.cpp's own ``convert_hf_to_gguf.py``, taken from the llama-cpp-python source
package on PyPI (same version as the installed one) and cached under ``$ITERKD_CACHE/tools``."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from iterkd.errors import UserError
from iterkd.io import write_with_tool
from iterkd.models.llamacpp_source import converter_dir

OUTTYPES = ("f32", "f16", "bf16", "q8_0")


def export_gguf(model_dir: str | Path, out_file: str | Path | None = None, outtype: str = "q8_0") -> Path:
    """Convert a transformers model directory to one GGUF file (atomically); returns its path. Skips the
    work when the file exists and is newer than the model's weights."""
    model_dir = Path(model_dir)
    if outtype not in OUTTYPES:
        raise UserError(f"unknown GGUF type {outtype!r}; choose one of {', '.join(OUTTYPES)}")
    if not (model_dir / "config.json").exists():
        raise UserError(f"{model_dir}: not a transformers model directory (no config.json)")
    out = Path(out_file) if out_file else model_dir.parent / f"{model_dir.name}.{outtype}.gguf"
    weights = [p.stat().st_mtime for p in model_dir.glob("*.safetensors")]
    if out.exists() and weights and out.stat().st_mtime >= max(weights):
        return out
    tool = converter_dir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tool / "gguf-py"), str(tool)])}
    command = lambda tmp: [sys.executable, str(tool / "convert_hf_to_gguf.py"), str(model_dir),  # noqa: E731
                           "--outfile", str(tmp), "--outtype", outtype]  # fmt: skip
    write_with_tool(out, command, f"GGUF export of {model_dir}", env=env)
    return out


def export_untrained(model: str, out_dir: str | Path, outtype: str = "q8_0") -> Path:
    """The untrained student exactly as training sees it (a GGUF student de-quantised by transformers), saved to
    ``out_dir/final`` and exported like a trained one: the fair "before" model when trained students are
    evaluated from their exported GGUF (same format, same llama.cpp path). Skips what exists; returns the GGUF."""
    from iterkd.train.config import TrainConfig
    from iterkd.train.sft import load_model_and_tokenizer

    final = Path(out_dir) / "final"
    if not (final / "config.json").exists():
        net, tokenizer, _ = load_model_and_tokenizer(TrainConfig(model=model, train_file="-", output_dir=str(out_dir)))
        tmp = final.with_name("final.tmp")
        net.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if final.exists():  # left without config.json by an interrupted save
            shutil.rmtree(final)
        os.replace(tmp, final)
    return export_gguf(final, outtype=outtype)
