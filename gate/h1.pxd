# Typed classes for the compiled build (gate.accel); the .py stays the source of behaviour.
# Keep the fields in step with the classes' `__slots__`.
cimport cython


@cython.final
cdef class RequestInfo:
    cdef public object host, host_header, target, content_length, upgrade, connection_tokens, lines, hop
    cdef public bint chunked, expect_continue


@cython.final
cdef class ResponseFraming:
    cdef public object content_length, connection_drop, lines
    cdef public bint body, chunked_in, chunked_out, close_after, keep_alive_header, upstream_close

    cpdef close_after_response(self)


@cython.locals(kind=Py_ssize_t, repeated=Py_ssize_t, lines=list, seen=dict, name=bytes, value=bytes, cl=bytes, te=bytes,
               host_header=bytes, expect=bytes, upgrade=bytes, target=bytes, hop=bytes)
cpdef RequestInfo check_request(bytes method, bytes url, str version, list headers)


@cython.locals(cl=bytes, te=bint, close=bint, kinds=dict, lower=dict, lines=list, name=bytes, value=bytes, ln=bytes,
               no_body=bint, ka10=bint)
cpdef ResponseFraming response_framing(int status, list headers, bytes request_method, str client_version,
                                       bint client_keep_alive, render=*)
