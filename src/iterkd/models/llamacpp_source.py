"""llama.cpp's own sources, taken from the llama-cpp-python source package on PyPI (the same version as the
installed ``llama_cpp``), cached under ``$ITERKD_CACHE/tools``:

* ``converter_dir()``: ``convert_hf_to_gguf.py`` and its packages (GGUF export of trained students);
* ``native_server()`` / ``build_native_server()``: llama.cpp's C++ ``llama-server``, built here with CMake.
  Unlike ``llama_cpp.server`` (one request at a time) it decodes several requests together (``--parallel``
  slots, continuous batching): on a 2-core CPU 8 parallel greedy streams of Qwen2.5-Coder-1.5B produce 1.9x
  the tokens per second of one in-process stream (0.5B: 1.8x; SmolLM2-135M: no gain; bench/generation_speed.py,
  2026-11-25). It is built for this CPU
  (``GGML_NATIVE``), so the cache directory is not portable between machines of different CPU families.

    iterkd models build-server      # or: make llama-server (about 9 minutes on 2 cores)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from iterkd.errors import UserError

SERVER_ENV = "ITERKD_LLAMA_SERVER"  # path of a llama-server binary to use instead of the built one


def llamacpp_version() -> str:
    try:
        import llama_cpp
    except ImportError as e:
        raise UserError("llama.cpp tools need llama-cpp-python (pip install llama-cpp-python)") from e
    return llama_cpp.__version__


def tools_dir() -> Path:
    from iterkd.models.registry import cache_dir

    return cache_dir() / "tools"


def _download_sdist(dest: Path, why: str) -> Path:
    version = llamacpp_version()
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
         f"llama-cpp-python=={version}", "-d", str(dest)],
        capture_output=True, text=True,
    )  # fmt: skip
    sdists = list(dest.glob("llama_cpp_python-*.tar.gz"))
    if proc.returncode != 0 or not sdists:
        raise UserError(
            f"cannot download the llama-cpp-python {version} source package ({why}): {proc.stderr.strip()[-300:]}"
        )
    return sdists[0]


def _extract_vendor(sdist: Path, dest: Path, wanted: tuple[str, ...] | None = None) -> None:
    """Extract ``vendor/llama.cpp/`` of the source package into ``dest`` (only paths starting with ``wanted``)."""
    prefix = f"{sdist.name[: -len('.tar.gz')]}/vendor/llama.cpp/"
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            rel = member.name[len(prefix) :] if member.name.startswith(prefix) else None
            if rel and (wanted is None or rel.startswith(wanted)) and (member.isfile() or member.isdir()):
                member.name = rel
                tar.extract(member, dest, filter="data")


def converter_dir() -> Path:
    """Directory holding convert_hf_to_gguf.py and its gguf-py/conversion packages (fetched once)."""
    dest = tools_dir() / f"llama.cpp-{llamacpp_version()}"
    if (dest / "convert_hf_to_gguf.py").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        sdist = _download_sdist(Path(tmp), "for the GGUF converter")
        staged = Path(tmp) / "llama.cpp"
        _extract_vendor(sdist, staged, ("convert_hf_to_gguf.py", "gguf-py/", "conversion/"))
        if not (staged / "convert_hf_to_gguf.py").exists():
            raise UserError(f"{sdist.name} holds no vendor/llama.cpp/convert_hf_to_gguf.py")
        os.replace(staged, dest)
    return dest


def server_dir() -> Path:
    return tools_dir() / f"llama-server-{llamacpp_version()}"


def native_server() -> Path | None:
    """The llama-server binary to use: ``$ITERKD_LLAMA_SERVER`` if set, else the one ``build_native_server``
    made for the installed llama-cpp-python version; None when there is none."""
    env = os.environ.get(SERVER_ENV, "").strip()
    if env:
        path = Path(env).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise UserError(f"{SERVER_ENV}={env}: not an executable file")
        return path
    try:
        path = server_dir() / "llama-server"
    except UserError:  # llama-cpp-python not installed: no version to look for
        return None
    return path if path.is_file() and os.access(path, os.X_OK) else None


CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON",
    "-DCMAKE_INSTALL_RPATH=$ORIGIN",  # the binary finds its libraries beside it
)


def build_native_server(
    jobs: int | None = None, progress: bool = True, dest: Path | None = None, extra_flags: tuple[str, ...] = ()
) -> Path:
    """Build llama.cpp's ``llama-server`` from the source package (needs cmake and a C++ compiler) into ``dest``
    (default ``server_dir()``) atomically; returns the binary. A no-op when it is already built. ``extra_flags``:
    more CMake options, for a variant build (e.g. ``-DGGML_LLAMAFILE=OFF``) into its own ``dest``."""
    dest = Path(dest) if dest is not None else server_dir()
    existing = dest / "llama-server"
    if existing.is_file():
        return existing
    # cmake from the system, or the `cmake` package from PyPI installed into this environment
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    cmake = shutil.which("cmake", path=path)
    if cmake is None:
        raise UserError("building llama-server needs cmake (pip install cmake, or apt-get install cmake)")
    if shutil.which("c++") is None:
        raise UserError("building llama-server needs a C++ compiler (Debian: apt-get install g++)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    jobs = jobs or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".build-") as tmp:
        src = Path(tmp) / "llama.cpp"
        _extract_vendor(_download_sdist(Path(tmp), "to build llama-server"), src)
        build = src / "build"
        log_path = Path(tmp) / "build.log"
        steps = [
            [cmake, "-S", str(src), "-B", str(build), *CMAKE_FLAGS, *extra_flags],
            [cmake, "--build", str(build), "-j", str(jobs), "--target", "llama-server"],
        ]
        with log_path.open("w") as log:
            for cmd in steps:
                _run_logged(cmd, log, progress)
        staged = Path(tmp) / "install"
        staged.mkdir()
        for item in (build / "bin").iterdir():
            if item.name == "llama-server" or ".so" in item.name:
                shutil.copy2(item, staged / item.name, follow_symlinks=False)
        if not (staged / "llama-server").is_file():
            raise UserError(f"the llama-server build produced no binary; see {log_path}")
        os.replace(staged, dest)
    return dest / "llama-server"


def _run_logged(cmd: list[str], log, progress: bool) -> None:
    """Run a build step; its output goes to ``log`` and CMake's ``[ NN%]`` lines to stderr when ``progress``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tty = sys.stderr.isatty()
    tail: list[str] = []
    last = -1
    for line in proc.stdout:
        log.write(line)
        tail = (tail + [line.rstrip()])[-15:]
        pct = line[1:4].strip() if line.startswith("[") and "%]" in line[:7] else ""
        if progress and pct.isdigit() and int(pct) != last and (tty or int(pct) // 10 != last // 10):
            last = int(pct)
            start, end = ("\r", "") if tty else ("", "\n")  # a log file gets one line per 10%
            print(f"{start}building llama-server {last}%", end=end, file=sys.stderr, flush=True)
    if proc.wait() != 0:
        raise UserError(f"llama-server build step failed ({' '.join(cmd[:3])} ...):\n" + "\n".join(tail))
    if progress and tty and last >= 0:
        print(file=sys.stderr)
