# Typed classes for the compiled build (gate.accel); the .py stays the source of behaviour.
# Keep the fields in step with the classes' `__init__`.
cimport cython


@cython.final
cdef class Histogram:
    cdef public double window_s
    cdef public Py_ssize_t windows
    cdef public list counts, slot_ids

    @cython.locals(slot_id=Py_ssize_t, i=Py_ssize_t)
    cpdef add(self, Py_ssize_t bucket, double now)


@cython.final
cdef class Stats:
    cdef public Py_ssize_t requests, bytes_in, bytes_out, active
    cdef public list by_class, cells
    cdef public Histogram latency

    cpdef enter(self)
    cpdef leave(self)


@cython.locals(s=Stats, cls=Py_ssize_t)
cpdef record_request(tuple stats, Histogram cell, Py_ssize_t status, Py_ssize_t bytes_in, Py_ssize_t bytes_out,
                     double ms, double now)
