# Typed fields for the compiled build (gate.accel); the .py stays the source of behaviour.
# Keep the fields in step with `ClientConnection.__init__`.
cimport cython

from gate.exchange cimport Exchange
from gate.pipeline cimport after_response, on_error, on_request
from gate.h1 cimport ResponseFraming, check_request
from gate.h1heads cimport response_head
from gate.state cimport ProxyState


@cython.final
cdef class ClientConnection:
    cdef public object config, scheme, transport, parser, client_ip, queue, out, pending_error, tunnel
    cdef public object _writable
    cdef public bytes _url
    cdef public list _headers
    cdef public ProxyState state
    cdef public bint trusted, write_paused, closing, closed, upgrading, lingering, _in_body
    cdef public Py_ssize_t out_size, paused, _head_bytes, plain_upgrade, _max_url, _max_head_bytes, _max_headers
    cdef public int dkind
    cdef public double deadline, write_deadline, _keepalive_s

    cpdef flush(self)
    cpdef send_head(self, int status, reason, headers, framing, extra, remove, extra_lines=*)
    cpdef send_body(self, data, framing)
    cpdef send_end(self, framing, trailers=*, remove=*)
    cpdef response_done(self, Exchange ex, bint close)
    cpdef pause_reading_for(self, Py_ssize_t reason)
    cpdef resume_reading_for(self, Py_ssize_t reason)
    cpdef set_deadline(self, int kind, double seconds)
