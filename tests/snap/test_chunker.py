"""Content-defined chunking: deterministic cuts, size bounds, and reuse after an insert in the middle."""

from __future__ import annotations

import hashlib
import io
import random

from snap.chunker import Chunker, ChunkerParams


def _data(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def test_chunks_reassemble_and_respect_bounds() -> None:
    data = _data(12 * 1024 * 1024)
    chunks = list(Chunker().cut(data))
    assert b"".join(chunks) == data
    p = ChunkerParams()
    assert all(len(c) <= p.max_size for c in chunks)
    assert all(len(c) >= p.min_size for c in chunks[:-1])
    avg = len(data) / len(chunks)
    assert 512 * 1024 < avg < 2 * 1024 * 1024, avg


def test_stream_and_buffer_cut_the_same() -> None:
    data = _data(6 * 1024 * 1024, seed=2)
    assert list(Chunker().cut(data)) == list(Chunker().cut_stream(io.BytesIO(data)))


def test_insert_in_the_middle_reuses_most_chunks() -> None:
    data = _data(32 * 1024 * 1024, seed=3)
    mid = len(data) // 2
    edited = data[:mid] + b"inserted bytes that shift everything after them" + data[mid:]
    before = {hashlib.sha256(c).digest() for c in Chunker().cut(data)}
    after = [hashlib.sha256(c).digest() for c in Chunker().cut(edited)]
    new = [h for h in after if h not in before]
    assert 1 <= len(new) <= 3, len(new)  # only the chunk(s) around the insert are new
    assert len(after) - len(new) >= len(after) * 0.85


def test_empty_input_has_no_chunks() -> None:
    assert list(Chunker().cut(b"")) == []
    assert list(Chunker().cut_stream(io.BytesIO(b""))) == []


def test_params_round_trip() -> None:
    p = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384)
    assert ChunkerParams.from_dict(p.to_dict()) == p
