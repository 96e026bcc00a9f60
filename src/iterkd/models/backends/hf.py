"""transformers backend: the path training and the GPU use.

Loads a Hugging Face directory / hub id, or a GGUF file (``from_pretrained(dir, gguf_file=name)``; the weights
are de-quantised to float). Prompts are rendered with the tokenizer's chat template
(``apply_chat_template(add_generation_prompt=True)``) and generated in batches with left padding. bf16 on CUDA,
float32 on CPU.

Seeding: ``generate`` draws the samples of a whole batch from one torch RNG stream, so sampling is reproducible
for the same batch composition (same conversations, order, n and batch_size): each batch is seeded with
``sample_seed(params.seed, batch conversations, first sample index)``. Greedy decoding is deterministic up to
the numerics of the device (batch padding can change float rounding).
"""

from __future__ import annotations

import time

from iterkd.errors import UserError
from iterkd.models.base import BaseGenerator, Completion, SamplingParams, copies, sample_seed, truncate_at_stop
from iterkd.models.dequantize import transformers_ref
from iterkd.models.registry import ModelRef


class HFGenerator(BaseGenerator):
    backend = "hf"

    def __init__(
        self,
        ref: ModelRef,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int = 8,
        trust_remote_code: bool = False,
        n_threads: int | None = None,
        **extra,
    ) -> None:
        super().__init__()
        try:
            import torch
            import transformers
        except ImportError as e:
            raise UserError("the transformers backend needs torch and transformers (pip install iterkd[models])") from e
        self.name = ref.name
        self.ref = ref
        self.batch_size = max(1, int(batch_size))
        if n_threads:
            torch.set_num_threads(n_threads)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if dtype is None:
            torch_dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        else:
            torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        self.dtype = torch_dtype
        src = transformers_ref(ref)  # a registry GGUF: its de-quantised weights, made once
        kw = {"trust_remote_code": trust_remote_code}
        if src.gguf_file:
            kw["gguf_file"] = src.gguf_file
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(src.location, **kw)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(
                src.location, dtype=torch_dtype, **kw, **extra
            )
        except (OSError, ValueError) as e:
            raise UserError(f"transformers could not load {src.location}: {e}") from e
        self.model.to(self.device)
        self.model.eval()
        tok = self.tokenizer
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        if not getattr(tok, "chat_template", None):
            raise UserError(f"{ref.name}: the tokenizer has no chat template; use a chat/instruct model")
        self._eos_ids = self._stop_token_ids()

    def _stop_token_ids(self) -> list[int]:
        """End-of-turn ids: the generation config's eos ids plus the tokenizer's eos (e.g. <|im_end|>)."""
        ids: list[int] = []
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for v in (gen_eos, self.tokenizer.eos_token_id):
            if v is None:
                continue
            for i in v if isinstance(v, (list, tuple)) else [v]:
                if i not in ids:
                    ids.append(int(i))
        for special in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>"):
            i = self.tokenizer.convert_tokens_to_ids(special) if special in self.tokenizer.get_vocab() else None
            if i is not None and i not in ids:
                ids.append(int(i))
        return ids

    def render(self, conversation: list[dict]) -> str:
        """The prompt text the model sees for ``conversation``."""
        return self.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)

    def _generate(self, convs: list[list[dict]], params: SamplingParams, n: int, seed: int) -> list[list[Completion]]:
        import torch

        tok = self.tokenizer
        texts = [self.render(c) for c in convs]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        gen_kw = dict(
            max_new_tokens=params.max_tokens,
            pad_token_id=tok.pad_token_id,
            eos_token_id=self._eos_ids,
        )
        if params.greedy:
            gen_kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            n_ret = 1
        else:
            gen_kw.update(
                do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or None,
                num_return_sequences=n,
            )  # fmt: skip
            n_ret = n
        if params.stop:
            gen_kw.update(stop_strings=list(params.stop), tokenizer=tok)
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, **gen_kw)
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        eos = set(self._eos_ids)
        results: list[list[Completion]] = []
        for i in range(len(convs)):
            row = []
            for j in range(n_ret):
                ids = new[i * n_ret + j]
                count, hit_eos = len(ids), False
                for k, t in enumerate(ids):
                    if t in eos:
                        count, hit_eos = k + 1, True
                        break
                # after an early stop (stop string) the row is padded: drop the padding
                if not hit_eos and tok.pad_token_id is not None:
                    while count > 0 and ids[count - 1] == tok.pad_token_id:
                        count -= 1
                text = tok.decode(ids[:count], skip_special_tokens=True)
                text, cut = truncate_at_stop(text, params.stop)
                finished = hit_eos or cut or count < params.max_tokens
                row.append(Completion(text, int(prompt_lens[i]), count, "stop" if finished else "length"))
            results.append(row)
        return results

    def chat(self, conversations: list[list[dict]], params: SamplingParams, n: int = 1) -> list[list[Completion]]:
        self._check(conversations, n)
        start = time.perf_counter()
        results: list[list[Completion]] = []
        generated: list[Completion] = []
        # sampling: n sequences per conversation share the batch, so fit batch_size sequences per batch
        per_batch = self.batch_size if params.greedy else max(1, self.batch_size // n)
        for b in range(0, len(conversations), per_batch):
            convs = conversations[b : b + per_batch]
            seed = sample_seed(params.seed, [m for c in convs for m in c] + [{"role": "n", "content": str(n)}], 0)
            rows = self._generate(convs, params, n, seed)
            for row in rows:
                generated.extend(row)
                results.append(copies(row[0], n) if len(row) < n else row)
        self.stats.add(results, time.perf_counter() - start, generated)
        return results

    def close(self) -> None:
        model = getattr(self, "model", None)
        if model is not None:
            self.model = None
            del model
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except Exception:
                pass
