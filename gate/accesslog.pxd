# Typed signature and cache for the compiled build (gate.accel); the .py stays the source of behaviour.
cdef dict _QUOTED
cdef Py_ssize_t _QUOTED_MAX

cdef str _q(str s)

cpdef str access_line(long long at_us, host, method, path, Py_ssize_t status, Py_ssize_t bytes_sent,
                      long long duration_us, upstream, client_ip, request_id, route, protocol,
                      Py_ssize_t bytes_received, long long upstream_us)
