"""Probe: host and per-service metrics every second into an SQLite time-series store, with rollups,
queries, alert rules and a Prometheus endpoint.

Primitives: `ProbeService` (the component: ticks, stores, evaluates alerts), `MetricsStore`
(`metrics.db`: series, raw points, 5 s / 1 min rollups, retention, queries, Top-N), the collectors
(`HostCollector`, `ServiceCollector`, `GateAdapter`), and the pure cores — `rates` (counters with
wrap/reset), `rollup` (bucket, retention and resolution arithmetic), `alerts` (the rule state
machine), `exposition` (Prometheus text).
"""

from probe.config import AlertRuleBody, ProbeConfig, load_probe_config
from probe.exposition import CONTENT_TYPE
from probe.params import parse_labels, parse_step, parse_time
from probe.service import ProbeService
from probe.tsdb import MetricsStore

__all__ = [
    "CONTENT_TYPE",
    "AlertRuleBody",
    "MetricsStore",
    "ProbeConfig",
    "ProbeService",
    "load_probe_config",
    "parse_labels",
    "parse_step",
    "parse_time",
]
