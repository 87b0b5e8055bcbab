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

cdef str _head(str host, method)
cdef str _middle(upstream, str client_ip)
cdef str _tail(route, str protocol_q)

cdef str _render(long long at_us, str head, str path, Py_ssize_t status, Py_ssize_t bytes_sent,
                 long long duration_us, str middle, str request_id, str tail,
                 Py_ssize_t bytes_received, long long upstream_us)


@cython.final
cdef class AccessBatch:
    cdef public object sink, wall_clock, timer, timer_handle
    cdef public list lines
    cdef public Py_ssize_t chars, max_lines, max_chars
    cdef public double max_s, first_at, at_offset
    cdef public bint closed
    cdef public str head_host, middle_client, tail_version, head, middle, tail
    cdef public bytes head_method
    cdef public object middle_upstream, tail_route

    @cython.locals(lines=list, line=str, at=double)
    cpdef add(self, double started, double ended, host, bytes method, path, Py_ssize_t status, Py_ssize_t bytes_sent,
              upstream, client_ip, request_id, route, version, Py_ssize_t bytes_received, upstream_ms)
    cdef _open(self)
    cpdef flush(self)
    cpdef close(self)
