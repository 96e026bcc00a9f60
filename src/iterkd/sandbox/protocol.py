"""Parent <-> worker framing: 4-byte little-endian length + UTF-8 JSON, over pipes."""

from __future__ import annotations

import json
import os
import struct

_HDR = struct.Struct("<I")
MAX_MESSAGE = 256 << 20


def send(fd: int, obj) -> None:
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    buf = memoryview(_HDR.pack(len(data)) + data)
    while buf:
        n = os.write(fd, buf)
        buf = buf[n:]


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        b = os.read(fd, n - got)
        if not b:
            return None
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def recv(fd: int):
    """Next message, or None on EOF (the other side is gone)."""
    hdr = _read_exact(fd, _HDR.size)
    if hdr is None:
        return None
    (n,) = _HDR.unpack(hdr)
    if n > MAX_MESSAGE:
        raise ValueError(f"protocol message too large ({n} bytes)")
    data = _read_exact(fd, n)
    if data is None:
        return None
    return json.loads(data.decode("utf-8", "surrogatepass"))
