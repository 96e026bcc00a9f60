"""The training stage: config loading, data validation, and real SFT runs of SmolLM2-135M-Instruct on CPU.

The model tests are marked slow (they still run in CI). They train a few steps on tiny conversational datasets
with short sequences and one CPU thread (on a busy 2-core machine two threads are several times slower).
The base model is loaded once from the registry GGUF through the training loader and saved as a transformers
directory, which the runs then load quickly.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import STUDENT
from iterkd.errors import UserError
from iterkd.train import TrainConfig, describe_keys, load_config, read_rows

ROWS = [
    {
        "task_id": f"toy/{i}",
        "method": "persd",
        "round": 1,
        "prompt": [{"role": "user", "content": f"Write a Python function add{i}(x) that returns x plus {i}."}],
        "completion": [{"role": "assistant", "content": f"```python\ndef add{i}(x):\n    return x + {i}\n```"}],
    }
    for i in range(8)
]
SECRET = {
    "task_id": "secret/0",
    "prompt": [{"role": "user", "content": "What is the secret password of the vault?"}],
    "completion": [{"role": "assistant", "content": "The password is purple-otter-1937."}],
}


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def run_config(tmp_path: Path, base: Path, train_file: Path, *overrides: str, out: str = "run") -> TrainConfig:
    """A small CPU run: short sequences, batch 2, one thread, no checkpoints unless asked."""
    return load_config(
        None,
        [
            f"model={base}", f"train_file={train_file}", f"output_dir={tmp_path / out}", "max_length=256",
            "per_device_train_batch_size=2", "gradient_accumulation_steps=1", "logging_steps=1",
            "save_strategy=no", "num_threads=1", "warmup_steps=0", *overrides,
        ],
    )  # fmt: skip


# ------------------------------------------------------------------------------------ config (no model)


def test_yaml_overrides_are_typed_and_resolved(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        "model: smollm2-135m-instruct\ntrain_file: data.jsonl\noutput_dir: out\n"
        "learning_rate: 2e-5\nmax_steps: 10\nsave_strategy: no\nlora_target_modules: [q_proj, v_proj]\n"
        "sft_args: {eval_accumulation_steps: 2}\n"
    )
    cfg = load_config(cfg_file, ["max_steps=20", "lora=true", "lora_dropout=0.1", "eval_file=", "bf16=false",
                                 "lora_target_modules=q_proj,k_proj", "save_strategy=no",
                                 'lr_scheduler_type="cosine"'])  # fmt: skip
    assert cfg.learning_rate == 2e-5 and isinstance(cfg.learning_rate, float)  # YAML 1.1 reads 2e-5 as a string
    assert cfg.max_steps == 20 and cfg.lora is True and cfg.lora_dropout == 0.1
    assert cfg.save_strategy == "no" and cfg.eval_file is None and cfg.bf16 is False
    assert cfg.lora_target_modules == ["q_proj", "k_proj"]
    assert cfg.sft_args == {"eval_accumulation_steps": 2}
    assert cfg.lr_scheduler_type == "cosine"  # a quoted value is the string inside the quotes
    auto = load_config(None, ["model=m", "train_file=t", "output_dir=o"]).resolved()
    assert auto.learning_rate == 2e-5 and auto.lora_target_modules == "all-linear"
    assert load_config(None, ["model=m", "train_file=t", "output_dir=o", "lora=yes"]).resolved().learning_rate == 2e-4
    import torch

    assert auto.bf16 is bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    saved = auto.save(tmp_path / "train_config.yaml")
    assert load_config(saved) == auto  # the resolved file reloads to the same config
    for line in describe_keys().splitlines()[:3]:
        assert ":" in line


@pytest.mark.parametrize(
    "source, message",
    [
        (
            ["learning_rat=1e-4"],
            "override 'learning_rat=1e-4': unknown setting 'learning_rat' (did you mean learning_rate",
        ),
        (["max_steps=lots"], "override 'max_steps=lots': 'max_steps' must be a valid integer"),
        (["max_steps=0"], "override 'max_steps=0': 'max_steps' must be > 0 or -1"),
        (["learning_rate=abc"], "'learning_rate' must be a valid number"),
        (["lora=maybe"], "'lora' must be a valid boolean"),
        (["long_examples=wrap"], "'long_examples' must be 'drop' or 'truncate', got 'wrap'"),
        (["max_steps"], "expected key=value"),
        ({"model": "m", "num_epochs": 3}, "c.yaml: unknown setting 'num_epochs' (did you mean num_train_epochs"),
        ("model: [unclosed", "c.yaml:1: not valid YAML"),
        ({"model": "m"}, "'train_file' is required"),
    ],
)
def test_config_mistakes_are_user_errors(tmp_path, source, message):
    base = ["model=m", "train_file=t", "output_dir=o"]
    with pytest.raises(UserError, match=None) as exc:
        if isinstance(source, list):
            load_config(None, base + source)
        else:
            path = tmp_path / "c.yaml"
            path.write_text(source if isinstance(source, str) else yaml.safe_dump(source))
            load_config(path)
    assert message in str(exc.value)


# ------------------------------------------------------------------------------------ data (no model)


@pytest.mark.parametrize(
    "lines, message",
    [
        (None, "no such train file"),
        ([], "contains no training rows"),
        ([json.dumps(ROWS[0]), "{broken"], "d.jsonl:2: not valid JSON"),
        ([json.dumps({"prompt": "x"})], "d.jsonl:1: missing 'completion'"),
        ([json.dumps({"prompt": "x", "completion": 3})], "d.jsonl:1: 'prompt' and 'completion' must both be"),
        ([json.dumps({"prompt": "x", "completion": " "})], "d.jsonl:1: 'completion' is empty"),
        ([json.dumps(ROWS[0]), json.dumps({"prompt": "p", "completion": "c"})], "d.jsonl:2: a plain-text row"),
        (
            [json.dumps({"prompt": [{"role": "user"}], "completion": [{"role": "assistant", "content": "c"}]})],
            "d.jsonl:1: 'prompt'[0] must be a message",
        ),
        (
            [
                json.dumps(
                    {"prompt": [{"role": "user", "content": "p"}], "completion": [{"role": "user", "content": "c"}]}
                )
            ],
            "completion messages must be 'assistant'",
        ),
    ],
)
def test_bad_training_files_name_file_and_line(tmp_path, lines, message):
    path = tmp_path / "d.jsonl"
    if lines is not None:
        write_jsonl(path, lines)
    with pytest.raises(UserError) as exc:
        read_rows(path)
    assert message in str(exc.value)


def test_metadata_keys_are_dropped(tmp_path):
    rows, fmt = read_rows(write_jsonl(tmp_path / "d.jsonl", ROWS[:2] + [""]))
    assert fmt == "chat" and len(rows) == 2
    assert set(rows[0]) == {"prompt", "completion"}
    rows, fmt = read_rows(write_jsonl(tmp_path / "t.jsonl", [{"prompt": "p", "completion": "c", "round": 2}]))
    assert fmt == "text" and rows == [{"prompt": "p", "completion": "c"}]


def iterkd_cli(*args):
    return subprocess.run([sys.executable, "-m", "iterkd", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip


def test_cli_train_help_and_one_line_errors(tmp_path):
    res = iterkd_cli("train", "--help")
    assert res.returncode == 0 and "Usage" in res.stdout
    for key in ("learning_rate", "lora_target_modules", "merge_lora", "train_file", "--objective", "beta",
                "precompute_ref_log_probs"):  # fmt: skip
        assert key in res.stdout
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {STUDENT}\ntrain_file: {tmp_path / 'missing.jsonl'}\noutput_dir: {tmp_path / 'o'}\n")
    for args, message in (
        (["--config", cfg, "max_step=3"], "override 'max_step=3': unknown setting 'max_step' (did you mean max_steps"),
        (["--config", cfg], "missing.jsonl: no such train file"),
        (["--config", tmp_path / "nope.yaml"], "nope.yaml: no such config file"),
        (["--config", cfg, "--objective", "kto"], "unknown training objective 'kto'; choose sft or preference"),
        (["--config", cfg, "beta=0.2"], "unknown setting 'beta'"),  # a preference key without --objective preference
        (["--config", cfg, "--objective", "preference", "beta=0"], "'beta' must be greater than 0"),
        (["--config", cfg, "--objective", "preference"], "missing.jsonl"),
    ):
        res = iterkd_cli("train", *args)
        assert res.returncode == 2, res.stderr
        assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


# ------------------------------------------------------------------------------------ real training


# base_model (conftest.py): the registry GGUF loaded by the training loader (de-quantised), saved as a transformers
# directory, once per session


def completion_nll(model_dir: Path, row: dict) -> tuple[float, str]:
    """Mean negative log-likelihood per completion token given the prompt, and the greedy answer."""
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    prompt = list(tok.apply_chat_template(row["prompt"], add_generation_prompt=True, return_dict=True)["input_ids"])
    full = list(tok.apply_chat_template(row["prompt"] + row["completion"], return_dict=True)["input_ids"])
    assert full[: len(prompt)] == prompt
    ids = torch.tensor([full])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
        target = ids[0, 1:]
        nll = -logp[torch.arange(len(target)), target][len(prompt) - 1 :]
        out = model.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False, pad_token_id=tok.pad_token_id)
    return nll.mean().item(), tok.decode(out[0, len(prompt) :], skip_special_tokens=True)


def summary(out: Path) -> dict:
    return json.loads((out / "train_summary.json").read_text())


@pytest.mark.slow
def test_completion_only_labels_mask_the_prompt(tmp_path, base_model):
    import transformers

    from iterkd.train import build_trainer

    data = write_jsonl(tmp_path / "d.jsonl", ROWS[:3])
    trainer, cfg, info = build_trainer(run_config(tmp_path, base_model, data))
    tok = transformers.AutoTokenizer.from_pretrained(base_model)
    ds = trainer.train_dataset
    assert len(ds) == 3 and "task_id" not in ds.column_names and info["format"] == "chat"
    end_of_turn = tok.convert_tokens_to_ids("<|im_end|>")
    for row, ex in zip(ROWS, ds):
        prompt = list(tok.apply_chat_template(row["prompt"], add_generation_prompt=True, return_dict=True)["input_ids"])
        ids, labels = ex["input_ids"], ex["labels"]
        assert ids[: len(prompt)] == prompt
        assert all(label == -100 for label in labels[: len(prompt)])  # every prompt token masked
        assert labels[len(prompt) :] == ids[len(prompt) :]  # every completion token trained
        trained = [t for t in labels if t != -100]
        assert end_of_turn in trained  # the model learns to stop
        assert "def add" in tok.decode(trained)
    assert info["trained_tokens_per_epoch"] == sum(sum(t != -100 for t in ex["labels"]) for ex in ds)


@pytest.mark.slow
def test_plain_text_rows_train_the_completion_and_eos_only(tmp_path, base_model):
    import transformers

    from iterkd.train import build_trainer

    rows = [{"prompt": "def square(x):", "completion": "\n    return x * x\n", "task_id": "sq"}]  # token boundary
    trainer, _, info = build_trainer(run_config(tmp_path, base_model, write_jsonl(tmp_path / "t.jsonl", rows)))
    tok = transformers.AutoTokenizer.from_pretrained(base_model)
    [ex] = trainer.train_dataset
    prompt = tok(rows[0]["prompt"])["input_ids"]
    assert info["format"] == "text" and ex["input_ids"][: len(prompt)] == prompt
    assert all(label == -100 for label in ex["labels"][: len(prompt)])
    trained = [t for t in ex["labels"] if t != -100]
    assert trained[-1] == tok.eos_token_id and tok.decode(trained[:-1]) == rows[0]["completion"]


@pytest.mark.slow
def test_train_saves_a_model_that_loads_and_generates(tmp_path, base_model):
    from iterkd.models import SamplingParams, load_generator
    from iterkd.train import train

    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    held_out = write_jsonl(tmp_path / "e.jsonl", [SECRET, ROWS[0]])
    cfg = run_config(tmp_path, base_model, data, "max_steps=2", f"eval_file={held_out}", "eval_strategy=steps",
                     "eval_steps=2")  # fmt: skip
    final = train(cfg)
    out = tmp_path / "run"
    assert final == out / "final" and (final / "config.json").is_file() and (final / "model.safetensors").is_file()
    s = summary(out)
    assert s["global_step"] == 2 and s["examples"] == 8 and s["dropped_long"] == 0
    assert s["train_loss"] is not None and math.isfinite(s["train_loss"]) and s["tokens_per_second"] > 0
    assert s["eval_examples"] == 2 and math.isfinite(s["eval_loss"])
    written = load_config(out / "train_config.yaml")
    assert written == cfg.resolved() and written.learning_rate == 2e-5 and written.bf16 is False
    gen = load_generator(str(final), backend="transformers")
    try:
        [[c]] = gen.chat([ROWS[0]["prompt"]], SamplingParams(temperature=0.0, max_tokens=12))
    finally:
        gen.close()
    assert c.completion_tokens > 0 and c.text.strip()


@pytest.mark.slow
def test_training_on_one_example_makes_the_model_say_it(tmp_path, base_model):
    from iterkd.train import train

    data = write_jsonl(tmp_path / "d.jsonl", [SECRET] * 4)
    before, _ = completion_nll(base_model, SECRET)
    cfg = run_config(tmp_path, base_model, data, "max_steps=6", "per_device_train_batch_size=1",
                     "learning_rate=1e-4", "lr_scheduler_type=constant")  # fmt: skip
    after, answer = completion_nll(train(cfg), SECRET)
    assert before > 1.0 and after < 0.2 * before, (before, after)
    assert "purple-otter-1937" in answer, answer


@pytest.mark.slow
def test_lora_run_saves_a_merged_model(tmp_path, base_model):
    import torch
    import transformers

    from iterkd.models import SamplingParams, load_generator
    from iterkd.train import train

    data = write_jsonl(tmp_path / "d.jsonl", ROWS[:4])
    cfg = run_config(tmp_path, base_model, data, "lora=true", "lora_r=8", "lora_target_modules=q_proj,v_proj",
                     "max_steps=2", "learning_rate=1e-3")  # fmt: skip
    final = train(cfg)
    assert (final / "config.json").is_file() and not (final / "adapter_config.json").exists()
    assert summary(tmp_path / "run")["global_step"] == 2
    name = "model.layers.0.self_attn.q_proj.weight"
    merged = transformers.AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32).state_dict()
    base = transformers.AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32).state_dict()
    assert set(merged) == set(base)  # a plain model: no lora_A / lora_B left
    assert not torch.equal(merged[name], base[name])  # the adapter was merged in
    torch.testing.assert_close(merged["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"])
    gen = load_generator(str(final), backend="transformers")
    try:
        [[c]] = gen.chat([ROWS[1]["prompt"]], SamplingParams(temperature=0.0, max_tokens=8))
    finally:
        gen.close()
    assert c.completion_tokens > 0


@pytest.mark.slow
def test_interrupted_run_resumes_from_its_checkpoint(tmp_path, base_model):
    from iterkd.train import train

    data = write_jsonl(tmp_path / "d.jsonl", ROWS[:4])
    out = tmp_path / "run"
    common = ("save_strategy=steps", "save_steps=2", "save_total_limit=1")
    train(run_config(tmp_path, base_model, data, *common, "max_steps=2"))
    assert (out / "checkpoint-2").is_dir() and summary(out)["resumed_from"] is None
    train(run_config(tmp_path, base_model, data, *common, "max_steps=3"))
    s = summary(out)
    assert s["resumed_from"] == "checkpoint-2"  # relative to output_dir
    assert s["global_step"] == 3 and s["session_steps"] == 1
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2, 3]  # one history, continued


@pytest.mark.slow
def test_examples_longer_than_max_length_are_dropped_or_refused(tmp_path, base_model):
    from iterkd.train import build_trainer

    long_row = {**ROWS[0], "completion": [{"role": "assistant", "content": "x = 1\n" * 200}]}
    data = write_jsonl(tmp_path / "d.jsonl", [ROWS[0], long_row])
    trainer, _, info = build_trainer(run_config(tmp_path, base_model, data))
    assert len(trainer.train_dataset) == 1 and info["dropped_long"] == 1
    with pytest.raises(UserError, match=r"d.jsonl: all 2 training examples are longer than max_length=16 tokens"):
        build_trainer(run_config(tmp_path, base_model, data, "max_length=16"))


@pytest.mark.slow
def test_cli_trains_the_registry_model_from_the_shipped_cpu_config(tmp_path):
    config = Path(__file__).resolve().parents[1] / "configs" / "train" / "persd-smollm2-cpu.yaml"
    data = write_jsonl(tmp_path / "d.jsonl", ROWS[:2])
    res = iterkd_cli("train", "--config", config, f"train_file={data}", f"output_dir={tmp_path / 'run'}",
                     "max_steps=1", "gradient_accumulation_steps=1", "max_length=256", "save_strategy=no",
                     "num_threads=1")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    final = tmp_path / "run" / "final"
    assert f"model      {final}" in res.stdout and (final / "config.json").is_file()
    written = load_config(tmp_path / "run" / "train_config.yaml")
    assert written.model == STUDENT and written.max_steps == 1 and written.long_examples == "drop"
    assert summary(tmp_path / "run")["global_step"] == 1


@pytest.mark.slow
def test_trained_student_exports_to_gguf_and_runs_in_llama_cpp(tmp_path, base_model):
    """A trained model directory -> GGUF (llama.cpp's converter from the PyPI sdist) -> llama.cpp generation."""
    import shutil

    from iterkd.models import SamplingParams, load_generator
    from iterkd.train.export import export_gguf

    # the training loader's model saved as a transformers directory, as training saves its final model (hard
    # links: the export only reads it)
    shutil.copytree(base_model, tmp_path / "final", copy_function=os.link)
    gguf = export_gguf(tmp_path / "final", outtype="q8_0")
    assert gguf.name == "final.q8_0.gguf" and gguf.stat().st_size > 100e6
    assert export_gguf(tmp_path / "final", outtype="q8_0") == gguf  # up to date: not redone
    gen = load_generator(str(gguf))
    [[out]] = gen.chat(
        [[{"role": "user", "content": "Write a Python function add(a, b) that returns a + b."}]],
        SamplingParams(max_tokens=48),
    )
    gen.close()
    assert "def" in out.text and out.completion_tokens > 0
    with pytest.raises(UserError, match="not a transformers model directory"):
        export_gguf(tmp_path)


# ------------------------------------------------------------------------------------ preference (IterKD Stage I)


def _pairs_file(path):
    rows = []
    for fn, arg, good, bad in [
        ("add", "a, b", "return a + b", "return a - b"),
        ("square", "x", "return x * x", "return x + x"),
    ]:
        rows.append({
            "prompt": [{"role": "user", "content": f"Write a Python function {fn}({arg})."}],
            "chosen": [{"role": "assistant", "content": f"```python\ndef {fn}({arg}):\n    {good}\n```"}],
            "rejected": [{"role": "assistant", "content": f"```python\ndef {fn}({arg}):\n    {bad}\n```"}],
            "task_id": fn,  # metadata: ignored by training
        })  # fmt: skip
    write_jsonl(path, [json.dumps(r) for r in rows])
    return path


def test_preference_config_and_rows_are_checked_before_training(tmp_path):
    from iterkd.train.preference import PreferenceConfig, read_pairs

    with pytest.raises(UserError, match="'loss_type' must be a non-empty list of sigmoid"):
        PreferenceConfig(model="m", train_file="t", output_dir="o", loss_type=["nope"])
    with pytest.raises(UserError, match="'beta' must be greater than 0"):
        PreferenceConfig(model="m", train_file="t", output_dir="o", beta=0)
    bad = tmp_path / "p.jsonl"
    write_jsonl(bad, [json.dumps({"prompt": [{"role": "user", "content": "x"}], "chosen": []})])
    with pytest.raises(UserError, match="p.jsonl:1: 'chosen' must be a non-empty list"):
        read_pairs(str(bad))
    assert [sorted(r) for r in read_pairs(str(_pairs_file(tmp_path / "ok.jsonl")))] == [
        ["chosen", "prompt", "rejected"]
    ] * 2


@pytest.mark.slow
def test_preference_training_ranks_correct_above_faulty_and_resumes(tmp_path, base_model):
    from iterkd.train.preference import PreferenceConfig, train_preference

    common = dict(model=str(base_model), train_file=str(_pairs_file(tmp_path / "pairs.jsonl")), output_dir=str(tmp_path / "run"),
                  per_device_train_batch_size=2, gradient_accumulation_steps=1, learning_rate=1e-4, logging_steps=1,
                  save_steps=2, max_length=256)  # fmt: skip
    final = train_preference(PreferenceConfig(max_steps=3, **common))
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    logs = summary["log_history"]
    assert (final / "config.json").is_file() and summary["pairs"] == 2 and summary["final"] == "final"
    # step 1 starts at the reference (margin 0); the pairs it trains on end up ranked correct above faulty
    assert logs[0]["rewards/margins"] == 0.0 and logs[-1]["rewards/margins"] > 0
    again = train_preference(PreferenceConfig(max_steps=4, **common))
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert (
        again == final and summary["resumed_from"] == "checkpoint-3" and summary["global_step"] == 4
    )  # saved at the end


# ------------------------------------------------------------------------------------ several processes

ACCELERATE_CPU = Path(__file__).resolve().parents[1] / "configs" / "accelerate" / "cpu-2proc.yaml"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Pids of the live descendants of ``pid`` (Linux /proc)."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parent[int(stat.parent.name)] = int(fields[1])
    found, level = [], {pid}
    while level:
        level = {p for p, pp in parent.items() if pp in level}
        found += sorted(level)
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _accelerate_cmd(base: Path, data: Path, out: Path, *overrides: str) -> list[str]:
    """`accelerate launch` of `iterkd train` with the shipped 2-process CPU config (gloo), one thread each."""
    return [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file", str(ACCELERATE_CPU),
            "--main_process_port", str(_free_port()), "-m", "iterkd", "train", f"model={base}",
            f"train_file={data}", f"output_dir={out}", "max_length=256", "per_device_train_batch_size=1",
            "gradient_accumulation_steps=4", "logging_steps=1", "num_threads=1", "warmup_steps=0", "seed=0",
            *overrides]  # fmt: skip


def test_accelerate_per_process_accumulation_keeps_the_effective_batch(monkeypatch):
    from iterkd.train.sft import accumulation_per_process

    assert accumulation_per_process(8) == 8
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert accumulation_per_process(8) == 4 and accumulation_per_process(2) == 1
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(UserError, match="gradient_accumulation_steps=8 is not divisible by the 3 training processes"):
        accumulation_per_process(8)


@pytest.mark.slow
def test_accelerate_two_processes_killed_and_resumed_make_the_single_process_run(tmp_path, base_model):
    """Two processes, the launcher killed with kill -9 after a checkpoint, the same command again: one run, step for
    step the single-process run at the same effective batch."""
    import signal
    import time

    from iterkd.train import train

    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    steps = ["max_steps=5", "save_strategy=steps", "save_steps=1", "save_total_limit=2"]
    one = train(run_config(tmp_path, base_model, data, "per_device_train_batch_size=1", "gradient_accumulation_steps=4",
                           "seed=0", *steps, out="one"))  # fmt: skip
    single = json.loads((one.parent / "checkpoint-5" / "trainer_state.json").read_text())

    # kill -9 of the launcher alone, after a checkpoint: its ranks die with it (torchrun starts each rank in a
    # session of its own, so neither the launcher's process group nor its death holds them unless the rank asks
    # the kernel for it; ranks left running would go on writing checkpoints beside the resumed run); then the
    # same command resumes
    out = tmp_path / "killed"
    proc = subprocess.Popen(_accelerate_cmd(base_model, data, out, *steps), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 600
    while not (out / "checkpoint-2" / "trainer_state.json").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint-2 within 10 minutes"
        time.sleep(0.2)
    launch = _descendants(proc.pid)
    assert len(launch) >= 2, launch  # both ranks
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    while any(_alive(pid) for pid in launch):
        assert time.monotonic() < deadline, f"a rank outlived its launcher: {[p for p in launch if _alive(p)]}"
        time.sleep(0.1)
    assert not (out / "train_summary.json").exists()
    res = subprocess.run(_accelerate_cmd(base_model, data, out, *steps), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("model      ") == 1  # only the main process reports (and writes)
    s = summary(out)
    assert s["processes"] == 2 and s["gradient_accumulation_steps_per_process"] == 2
    assert s["global_step"] == 5 and s["resumed_from"] is not None and s["session_steps"] < 5
    assert (out / "final" / "config.json").is_file()
    # one history, continued; the same 4 examples per optimizer step, gradients averaged over the two processes:
    # the single-process run up to float rounding (measured 2026-12-03 without the kill: mean loss 0.0946971 both,
    # last logged loss equal to 2e-6 relative); tolerance 1e-3 relative for other CPUs' summation orders
    state = json.loads((out / "checkpoint-5" / "trainer_state.json").read_text())
    losses = [[(h["step"], h["loss"]) for h in st["log_history"] if "loss" in h] for st in (single, state)]
    assert [step for step, _ in losses[1]] == [step for step, _ in losses[0]] == [1, 2, 3, 4, 5]
    assert [loss for _, loss in losses[1]] == pytest.approx([loss for _, loss in losses[0]], rel=1e-3)


@pytest.mark.slow
def test_accelerate_preference_training_of_an_iterkd_round_in_two_processes_matches_one(tmp_path, base_model):
    """IterKD's preference training (DPO + NLL) with a distill config's `train_launcher`: the round runs `accelerate
    launch ... iterkd train --objective preference` in 2 CPU processes and reaches the single-process loss at the
    same effective batch; the round's student is exported for generation as usual. (The launcher is the same for
    every objective: `iterkd.train.launch.launch_training`.)"""
    import shutil

    from iterkd.pipeline import load_distill_config
    from iterkd.pipeline.iterkd import IterKDConfig, Round
    from iterkd.train import load_config, train
    from iterkd.train.launch import launch_training

    pairs = _pairs_file(tmp_path / "pairs.jsonl")
    settings = dict(max_length=256, per_device_train_batch_size=1, gradient_accumulation_steps=2, learning_rate=1e-4,
                    logging_steps=1, save_strategy="no", num_threads=1, warmup_steps=0, seed=0, max_steps=2)  # fmt: skip
    values = [f"model={base_model}", f"train_file={pairs}", f"output_dir={tmp_path / 'one'}"]
    tcfg = load_config(None, values + [f"{k}={v}" for k, v in settings.items()], "preference")
    with pytest.raises(UserError, match="no such accelerate config file"):
        launch_training(tcfg, str(tmp_path / "missing.yaml"))
    train(tcfg)
    one = summary(tmp_path / "one")

    run = tmp_path / "run"
    cfg = load_distill_config(None, [f"run_dir={run}", f"train_launcher={ACCELERATE_CPU}", f"train={json.dumps(settings)}"],
                              "iterkd")  # fmt: skip
    rdir = run / "rounds" / "r1"
    rdir.mkdir(parents=True)
    shutil.copy(pairs, rdir / "pairs.jsonl")
    student = Round(cfg, IterKDConfig(), 1, rdir, {"train": str(base_model), "generate": "-"}, [], None).train(2)
    two = summary(rdir / "train")
    assert student["train"] == str(rdir / "train" / "final") and Path(student["generate"]).is_file()
    assert "--objective preference" in (rdir / "train" / "train_config.yaml").read_text()
    assert two["processes"] == 2 and two["gradient_accumulation_steps_per_process"] == 1
    assert one["processes"] == 1 and one["gradient_accumulation_steps_per_process"] == 2
    assert two["global_step"] == one["global_step"] == 2 and two["pairs"] == one["pairs"] == 2
    # both pairs in every optimizer step, one per process: the same DPO + NLL run up to float rounding
    # (measured 2026-12-03: mean loss 0.5321591645479202 in both; tolerance 1e-3 relative for other CPUs)
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-3)
    margins = [[h["rewards/margins"] for h in s["log_history"]] for s in (one, two)]
    assert margins[1] == pytest.approx(margins[0], rel=1e-3, abs=1e-4)
