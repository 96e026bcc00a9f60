"""Build llama-server from the same source package as `iterkd models build-server`, with extra CMake flags.

    python experiments/persd-mini/noise/build_variant.py /tmp/det/nollamafile -DGGML_LLAMAFILE=OFF
    # -> /tmp/det/nollamafile/llama-server (pass it to compare.sh)
"""

import sys
from pathlib import Path

from iterkd.models.llamacpp_source import build_native_server

print(build_native_server(jobs=2, dest=Path(sys.argv[1]), extra_flags=tuple(sys.argv[2:])))
