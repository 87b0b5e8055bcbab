# Typed classes for the compiled build (gate.accel); the .py stays the source of behaviour.
# Keep the fields in step with the classes' `__slots__`.
cimport cython


@cython.final
cdef class RequestInfo:
    cdef public object host, host_header, target, content_length, upgrade, connection_tokens, lines
    cdef public bint chunked, expect_continue


@cython.final
cdef class ResponseFraming:
    cdef public object content_length, connection_drop, lines
    cdef public bint body, chunked_in, chunked_out, close_after, keep_alive_header, upstream_close
