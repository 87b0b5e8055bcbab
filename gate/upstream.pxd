# Typed fields for the compiled build (gate.accel); the .py stays the source of behaviour.
# Keep the fields in step with `UpstreamConnection.__init__`.
cimport cython

from gate.exchange cimport Exchange


cdef class UpstreamPool


@cython.final
cdef class UpstreamConnection:
    cdef public UpstreamPool pool
    cdef public object target, transport, parser, tunnel
    cdef public list _headers
    cdef public bytes _reason
    cdef public Exchange exchange
    cdef public double idle_since, deadline
    cdef public bint closed, keep_alive, _counted_out
    cdef public Py_ssize_t requests

    cpdef resume_reading(self)
    cpdef detach(self)
    cpdef park(self, double now)
    cpdef bint count_out(self)


@cython.final
cdef class UpstreamPool:
    cdef public Py_ssize_t max_idle, max_per_target, high_water, low_water, created, reused
    cdef public double idle_s
    cdef public object clock
    cdef public dict idle, open_count

    cpdef take_idle(self, target)
    cpdef release(self, UpstreamConnection conn)
