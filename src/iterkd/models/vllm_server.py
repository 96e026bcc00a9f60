"""``VllmServer``: vLLM's OpenAI-compatible server for transformers weights (a ``ManagedServer``, server.py), for
GPU machines where vLLM is installed (an optional extra: ``pip install 'iterkd[vllm]'``; never part of the CPU
setup). A registry name serves its Hugging Face model under the registry name; anything else is a model
directory or hub id. ``parallel`` sequences are batched; ``tensor_parallel`` GPUs per replica, ``data_parallel``
replicas. Answers are cached under ``<name>@vllm:<Hugging Face model>``: other weights (and numerics) than
llama.cpp's GGUF of the same name.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from iterkd.errors import UserError
from iterkd.models.server import ManagedServer


class VllmServer(ManagedServer):
    """vLLM's server child process (see the module docstring and ``ManagedServer``)."""

    name = "vLLM server"

    def __init__(self, model: str | Path, *, tensor_parallel: int = 1, data_parallel: int = 1, **common) -> None:
        from iterkd.models.registry import MODELS

        super().__init__(model, **common)
        self.tensor_parallel, self.data_parallel = tensor_parallel, data_parallel
        spec = MODELS.get(self.model.strip().lower())
        self.model_name = spec.name if spec else self.model.strip()
        self.vllm_model = spec.hf_id if spec else self.model.strip()  # the Hugging Face model (id or directory)

    def _prepare(self) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise UserError(
                f"{self.name}: vLLM is not installed in this environment (pip install vllm, on a machine with a "
                "GPU; it is an optional extra, never part of the CPU setup)"
            )

    def _identity(self) -> str:
        return f"{self.model_name}@vllm:{self.vllm_model}"

    def _command(self) -> list[str]:
        return [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.vllm_model, "--served-model-name", self.model_name,
            "--host", self.host, "--port", str(self.port),
            "--max-model-len", str(self.n_ctx), "--max-num-seqs", str(self.parallel), "--seed", "0",
            "--tensor-parallel-size", str(self.tensor_parallel), "--data-parallel-size", str(self.data_parallel),
        ] + self.extra_args  # fmt: skip
