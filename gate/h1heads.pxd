# Direct-call functions for the compiled build (gate.accel); the .py stays the source of behaviour.
cimport cython

from gate.h1 cimport RequestInfo, ResponseFraming


@cython.locals(out=list, name=bytes, value=bytes, n=bytes, lines=list, i=Py_ssize_t)
cpdef bytes upstream_request_head(bytes method, str target, list headers, RequestInfo info, str client_ip, str proto,
                                  bytes request_id, bint trusted, set_headers=*, remove_headers=*, bytes set_lines=*)


@cython.locals(out=list, name=bytes, value=bytes)
cpdef bytes response_head(int status, bytes reason, list headers, ResponseFraming framing, extra=*, remove=*, via=*,
                          bytes extra_lines=*, bint scanned=*)


cpdef bytes content_length_line(length)


@cython.locals(key=tuple, found=bytes)
cpdef bytes forwarding_block(host_header, client_ip, proto)


@cython.locals(key=tuple, line=bytes)
cpdef bytes status_line(status, reason)
