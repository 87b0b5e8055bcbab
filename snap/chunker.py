"""Content-defined chunking (FastCDC 2020 via pyfastcdc) with the repository's fixed parameters.

Pure apart from reading the stream it is given: bytes in, chunks out. The parameters are part of the
repository format (docs/snap-format.md): changing them would cut the same data differently.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pyfastcdc import FastCDC


@dataclass(frozen=True)
class ChunkerParams:
    """FastCDC parameters. pyfastcdc's real average chunk size is `avg_size + min_size` (≈1 MiB here)."""

    min_size: int = 256 * 1024
    avg_size: int = 768 * 1024
    max_size: int = 4 * 1024 * 1024
    seed: int = 0
    normalized_chunking: int = 1

    def to_dict(self) -> dict[str, int]:
        return {
            "min_size": self.min_size,
            "avg_size": self.avg_size,
            "max_size": self.max_size,
            "seed": self.seed,
            "normalized_chunking": self.normalized_chunking,
        }

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> ChunkerParams:
        return cls(
            int(d["min_size"]), int(d["avg_size"]), int(d["max_size"]), int(d["seed"]), int(d["normalized_chunking"])
        )


class Chunker:
    """Cuts streams into chunks. One instance per thread: pyfastcdc's object is not thread-safe."""

    def __init__(self, params: ChunkerParams | None = None) -> None:
        self.params = params or ChunkerParams()
        p = self.params
        self._cdc = FastCDC(
            p.avg_size,
            min_size=p.min_size,
            max_size=p.max_size,
            # pyfastcdc types it Literal[0, 1, 2, 3]; the repository's config keeps the int it chose
            normalized_chunking=p.normalized_chunking,  # type: ignore[arg-type]
            seed=p.seed,
        )

    def cut(self, data: bytes | bytearray | memoryview) -> Iterator[bytes]:
        """The chunks of an in-memory buffer, as independent `bytes` objects."""
        for c in self._cdc.cut_buf(data):
            yield bytes(c.data)

    def cut_stream(self, stream: BinaryIO) -> Iterator[bytes]:
        """The chunks of a readable stream. A stream rather than pyfastcdc's `cut_file`, which mmaps the
        file: a file truncated while it is mapped kills the process with SIGBUS."""
        for c in self._cdc.cut_stream(stream):
            yield bytes(c.data)  # the view is only valid until the next chunk
