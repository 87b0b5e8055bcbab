"""Logbus: captures every service's stdout/stderr and the gate's access log into rolling files with an
SQLite index, for search, time-range queries and live tail."""
