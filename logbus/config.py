"""Logbus settings: the `logbus:` section of the config file, validated with units in the names."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.units import parse_duration, parse_size

GIB = 1024**3
MIB = 1024**2


class LogbusConfig(BaseModel):
    """What can be set under `logbus:`. Durations accept `14d`, `12h`; sizes `2Gi`, `256Mi`, `64k`."""

    model_config = ConfigDict(extra="forbid")

    max_age_s: float = Field(default=14 * 86400, gt=0, description="delete log files older than this")
    max_total_bytes: int = Field(default=2 * GIB, gt=0, description="keep all logs together under this size")
    max_file_bytes: int = Field(default=256 * MIB, ge=1024, description="roll a file once it passes this size")
    block_bytes: int = Field(default=1 * MIB, ge=256, description="index granularity: one row per this many bytes")
    max_line_bytes: int = Field(default=16 * 1024, ge=64, description="longer lines are split, the split marked")
    buffer_bytes: int = Field(default=64 * MIB, ge=4096, description="memory for lines not yet on disk")
    tail_buffer_bytes: int = Field(default=1 * MIB, ge=4096, description="per live-tail client before skipping")
    retention_interval_s: float = Field(default=60.0, gt=0)
    access_batch_s: float = Field(
        default=0.1, gt=0, le=60, description="the gate's access log is written in batches: at most this late"
    )
    access_batch_lines: int = Field(
        default=2048, ge=1, le=65536, description="or once a batch has this many lines (each batch wakes the writer)"
    )

    @field_validator("max_age_s", "retention_interval_s", "access_batch_s", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, str) else v

    @field_validator(
        "max_total_bytes",
        "max_file_bytes",
        "block_bytes",
        "max_line_bytes",
        "buffer_bytes",
        "tail_buffer_bytes",
        mode="before",
    )
    @classmethod
    def _size(cls, v: Any) -> Any:
        return parse_size(v) if isinstance(v, str) else v
