"""A registry GGUF model as transformers loads it, de-quantised once and kept.

transformers reads a GGUF file by de-quantising every block and converting its tokenizer, which takes 15-25 s for
SmolLM2-135M on two cores; loading the same weights saved as a transformers directory takes a fraction of a second.
Training and the transformers backend load the student many times (every round, every row, every test), so a
registry model is de-quantised once into ``$ITERKD_CACHE/models/<name>.transformers/`` (float32 safetensors, the
exact values the GGUF load gives; about 4 bytes per parameter of disk) and read from there. Other GGUF files (a
user's own, a trained student's export) are loaded directly, as before.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from iterkd.errors import UserError
from iterkd.models.registry import MODELS, ModelRef, _locked, models_dir

MARKER = "source.sha256"  # inside the directory: the registry SHA-256 of the GGUF it was made from


def cache_path(name: str) -> Path:
    return models_dir() / f"{name}.transformers"


def _current(out: Path, sha: str) -> bool:
    try:
        return (out / MARKER).read_text().split()[0] == sha
    except (OSError, IndexError):
        return False


def transformers_ref(ref: ModelRef) -> ModelRef:
    """``ref`` itself, or for a registry GGUF model a ref to its de-quantised transformers directory (made on first
    use, under a lock, atomically; remade when the registry file changes)."""
    if not ref.is_gguf or ref.registry not in MODELS or ref.path != models_dir() / f"{ref.registry}.gguf":
        return ref
    sha = MODELS[ref.registry].sha256
    out = cache_path(ref.registry)
    if not _current(out, sha):
        with _locked(out.with_name(out.name + ".lock")):
            if not _current(out, sha):
                _dequantize(ref, out, sha)
    return ModelRef(kind="hf_dir", name=ref.name, path=out, hf_id=ref.hf_id, registry=ref.registry)


def _dequantize(ref: ModelRef, out: Path, sha: str) -> None:
    import torch
    import transformers

    kw = {"gguf_file": ref.gguf_file}
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(ref.location, **kw)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            ref.location, dtype=torch.float32, quantization_config=transformers.GgufConfig(dequantize=True), **kw
        )
    except (OSError, ValueError) as e:
        raise UserError(f"transformers could not load {ref.path}: {e}") from e
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    (tmp / MARKER).write_text(f"{sha}  {ref.path.name}\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
