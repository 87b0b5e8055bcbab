"""Pack files: blobs back to back between a 16-byte header and a sealed trailer listing them
(docs/snap-format.md, "Pack files"). Pure: bytes in, bytes out."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from snap.crypto import Crypto
from snap.errors import DamagedData

MAGIC = b"SNAPPACK"
TRAILER_MAGIC = b"SNAPIDX1"
VERSION = 1
HEADER = MAGIC + bytes([VERSION]) + bytes(7)
ENTRY = struct.Struct("<32sBQII")
_TAIL = struct.Struct("<I8s")

DATA, TREE = 0, 1
PACK_TARGET_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PackEntry:
    id: bytes
    type: int
    offset: int
    length: int
    raw_length: int


class PackBuilder:
    """Collects stored blobs for one pack in memory; `full` once past the target size."""

    def __init__(self, target_bytes: int = PACK_TARGET_BYTES) -> None:
        self.target_bytes = target_bytes
        self._parts: list[bytes] = [HEADER]
        self.entries: list[PackEntry] = []
        self.size = len(HEADER)

    @property
    def full(self) -> bool:
        return self.size >= self.target_bytes

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, blob_id: bytes, blob_type: int, stored: bytes, raw_length: int) -> None:
        self.entries.append(PackEntry(blob_id, blob_type, self.size, len(stored), raw_length))
        self._parts.append(stored)
        self.size += len(stored)

    def finish_parts(self, crypto: Crypto) -> list[bytes]:
        """The pack file as its pieces in order (header, blobs, sealed trailer): written one after the
        other rather than joined, which would copy every pack once more."""
        table = b"".join(ENTRY.pack(e.id, e.type, e.offset, e.length, e.raw_length) for e in self.entries)
        sealed = crypto.seal(table)
        return [*self._parts, sealed + _TAIL.pack(len(sealed), TRAILER_MAGIC)]

    def finish(self, crypto: Crypto) -> bytes:
        return b"".join(self.finish_parts(crypto))


def parse_pack(data: bytes, crypto: Crypto, name: str) -> list[PackEntry]:
    """The entries of a whole pack file, checked for consistency; `DamagedData` naming `name` otherwise."""
    if len(data) < len(HEADER) + _TAIL.size or data[:8] != MAGIC:
        raise DamagedData(f"pack {name}: not a pack file (bad header or too short, {len(data)} bytes)")
    if data[8] != VERSION:
        raise DamagedData(f"pack {name}: unknown pack version {data[8]}", hint="upgrade Infra-Core")
    length, magic = _TAIL.unpack_from(data, len(data) - _TAIL.size)
    end = len(data) - _TAIL.size
    if magic != TRAILER_MAGIC or length > end - len(HEADER):
        raise DamagedData(f"pack {name}: the trailer is damaged or the file is truncated")
    table = crypto.open(data[end - length : end], f"pack {name} trailer")
    if len(table) % ENTRY.size:
        raise DamagedData(f"pack {name}: the trailer has a partial entry")
    entries = [PackEntry(*ENTRY.unpack_from(table, i)) for i in range(0, len(table), ENTRY.size)]
    for e in entries:
        if e.offset < len(HEADER) or e.offset + e.length > end - length or e.type not in (DATA, TREE):
            raise DamagedData(f"pack {name}: blob {e.id.hex()[:12]} lies outside the pack's data")
    return entries
