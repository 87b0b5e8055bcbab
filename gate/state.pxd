# A typed class for the compiled build (gate.accel); the .py stays the source of behaviour.
# Keep the fields in step with `RouteRuntime.__slots__`.
cimport cython

from gate.accesslog cimport AccessBatch
from gate.metrics cimport Stats


@cython.final
cdef class RouteRuntime:
    cdef public object balance, cursor, limiter, max_body, methods, name, policies, req_set_lines, route
    cdef public object req_set_base
    cdef public object static_root
    cdef public Stats metrics
    cdef public dict cells, resp_extra, resp_lines
    cdef public list services, static_targets
    cdef public double timeout_s
    cdef public Py_ssize_t buffer_bytes

    cpdef tuple stats_for(self, upstream, target_stats, metrics)


@cython.final
cdef class ProxyState:
    cdef public object config, clock, wall_clock, timer, endpoints, challenges, metrics, health_policy
    cdef public object pool, trusted, snapshot, drained, tasks, via, _rid_prefix, hop_id, workers, auth_failures
    cdef public AccessBatch access_log
    cdef public dict health
    cdef public set clients
    cdef public bint draining, owns_workers
    cdef public Py_ssize_t _rid
