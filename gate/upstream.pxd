# Typed fields for the compiled build (gate.accel); the .py stays the source of behaviour.
# Keep the fields in step with `UpstreamConnection.__init__`.
cimport cython

from gate.exchange cimport Exchange


@cython.final
cdef class UpstreamConnection:
    cdef public object pool, target, transport, parser, tunnel, _headers, _reason
    cdef public Exchange exchange
    cdef public double idle_since, deadline
    cdef public bint closed, keep_alive, _counted_out
    cdef public Py_ssize_t requests
