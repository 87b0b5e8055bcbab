"""Logbus: captures every service's stdout/stderr and the gate's access log into rolling files with an
SQLite index, for search, time-range queries and live tail."""

from logbus.format import check_service_name, record_dict
from logbus.search import Matcher, Query, decode_cursor, encode_cursor
from logbus.service import LogbusService
from logbus.tail import Batch
from logbus.timespec import parse_time

__all__ = [
    "Batch",
    "LogbusService",
    "Matcher",
    "Query",
    "check_service_name",
    "decode_cursor",
    "encode_cursor",
    "parse_time",
    "record_dict",
]
