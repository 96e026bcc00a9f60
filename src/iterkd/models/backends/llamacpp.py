"""llama.cpp backend (llama-cpp-python): runs quantized GGUF files directly; the default on CPU.

The chat template is the model's own (``tokenizer.chat_template`` in the GGUF metadata, applied by
llama-cpp-python). Conversations are generated one at a time. Before each completion the context is reset
(no prompt-prefix reuse), so a completion depends only on its own prompt and seed: greedy decoding is
bit-for-bit repeatable and sample ``j`` of a conversation uses ``sample_seed(seed, conversation, j)``.

Known problem worked around here: on CPUs with Intel AMX (``amx_tile`` in /proc/cpuinfo), llama.cpp's AMX
weight-repacking buffers crash (segfault in ``llama_decode``) for any batch of more than one token, in the
build of llama-cpp-python 0.3.36 made on these machines. ``extra_bufts=None`` (default) therefore turns off
llama.cpp's extra buffer types (``use_extra_bufts``) on AMX CPUs; pass ``extra_bufts=True`` to force them on.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

from iterkd.errors import UserError
from iterkd.models.base import BaseGenerator, Completion, SamplingParams, copies, sample_seed
from iterkd.models.registry import ModelRef


def _gpu_offload_supported(llama_cpp) -> bool:
    try:
        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:  # pragma: no cover - very old / odd builds
        return False


def cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return "amx_tile" in f.read()
    except OSError:
        return False


_PARAMS_LOCK = threading.Lock()


def use_extra_bufts(wanted: bool | None) -> bool:
    """llama.cpp's extra buffer types: as ``wanted``, or by default off on AMX CPUs (see the module docstring)."""
    return not cpu_has_amx() if wanted is None else wanted


@contextlib.contextmanager
def model_params_override(llama_cpp, **fields):
    """Llama() takes no argument for some llama_model_params fields; set them on the defaults it starts from."""
    if not fields:
        yield
        return
    low = llama_cpp.llama_cpp
    with _PARAMS_LOCK:
        orig = low.llama_model_default_params

        def patched():
            params = orig()
            for k, v in fields.items():
                if hasattr(params, k):
                    setattr(params, k, v)
            return params

        low.llama_model_default_params = patched
        try:
            yield
        finally:
            low.llama_model_default_params = orig


class LlamaCppGenerator(BaseGenerator):
    backend = "llamacpp"

    def __init__(
        self,
        ref: ModelRef,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_gpu_layers: int | None = None,
        seed: int = 0,
        verbose: bool = False,
        reuse_prefix: bool = False,
        extra_bufts: bool | None = None,
        **extra,
    ) -> None:
        super().__init__()
        if not ref.is_gguf:
            raise UserError(f"{ref.name}: the llama.cpp backend needs a GGUF file")
        try:
            import llama_cpp
        except ImportError as e:
            raise UserError(
                "the llama.cpp backend needs llama-cpp-python (pip install 'llama-cpp-python[server]'), "
                "or use --backend hf"
            ) from e
        self.name = ref.name
        self.ref = ref
        self.reuse_prefix = reuse_prefix
        self.gpu = _gpu_offload_supported(llama_cpp)
        if n_gpu_layers is None:
            n_gpu_layers = -1 if self.gpu else 0
        self.n_ctx = n_ctx
        override = {} if use_extra_bufts(extra_bufts) else {"use_extra_bufts": False}
        try:
            with model_params_override(llama_cpp, **override):
                self._llm = llama_cpp.Llama(
                    model_path=str(ref.path),
                    n_ctx=n_ctx,
                    n_threads=n_threads or int(os.environ.get("ITERKD_THREADS", 0)) or os.cpu_count() or 1,
                    n_gpu_layers=n_gpu_layers,
                    seed=seed,
                    verbose=verbose,
                    **extra,
                )
        except (ValueError, RuntimeError) as e:
            raise UserError(f"llama.cpp could not load {ref.path}: {e}") from e

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _one(self, conversation: list[dict], params: SamplingParams, seed: int) -> Completion:
        if not self.reuse_prefix:
            self._llm.reset()
        out = self._llm.create_chat_completion(
            messages=conversation,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            min_p=0.0,
            repeat_penalty=1.0,
            max_tokens=params.max_tokens,
            stop=list(params.stop) if params.stop else None,
            seed=seed,
        )
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        reason = choice.get("finish_reason") or "stop"
        return Completion(
            text=choice["message"].get("content") or "",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason="length" if reason == "length" else "stop",
        )

    def chat(self, conversations: list[list[dict]], params: SamplingParams, n: int = 1) -> list[list[Completion]]:
        self._check(conversations, n)
        start = time.perf_counter()
        results: list[list[Completion]] = []
        generated: list[Completion] = []
        for conv in conversations:
            if params.greedy:  # greedy: one completion, returned n times
                c = self._one(conv, params, sample_seed(params.seed, conv, 0))
                generated.append(c)
                row = copies(c, n)
            else:
                row = [self._one(conv, params, sample_seed(params.seed, conv, j)) for j in range(n)]
                generated.extend(row)
            results.append(row)
        self.stats.add(results, time.perf_counter() - start, generated)
        return results

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            try:
                llm.close()
            except Exception:
                pass
            self._llm = None
