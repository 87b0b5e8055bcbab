# Typed signatures, cache and batch class for the compiled build (gate.accel); the .py stays the source of
# behaviour. Keep the fields in step with `AccessBatch.__slots__`.
cimport cython

cdef dict _QUOTED
cdef Py_ssize_t _QUOTED_MAX
cdef dict _PROTOCOLS

cdef str _q(s)

cpdef str access_line(long long at_us, host, method, path, Py_ssize_t status, Py_ssize_t bytes_sent,
                      long long duration_us, upstream, client_ip, request_id, route, protocol,
                      Py_ssize_t bytes_received, long long upstream_us)

cdef str _render(long long at_us, str host_q, str method_q, str path, Py_ssize_t status, Py_ssize_t bytes_sent,
                 long long duration_us, upstream, client_ip, request_id, route, str protocol_q,
                 Py_ssize_t bytes_received, long long upstream_us)


@cython.final
cdef class AccessBatch:
    cdef public object sink, wall_clock, timer, timer_handle
    cdef public list lines
    cdef public Py_ssize_t chars, max_lines, max_chars
    cdef public double max_s, first_at, at_offset
    cdef public bint closed

    @cython.locals(lines=list, line=str, at=double)
    cpdef add(self, double started, double ended, host, bytes method, path, Py_ssize_t status, Py_ssize_t bytes_sent,
              upstream, client_ip, request_id, route, version, Py_ssize_t bytes_received, upstream_ms)
    cdef _open(self)
    cpdef flush(self)
    cpdef close(self)
