# Typed fields and direct-call methods for the compiled build (gate.accel); the .py stays the source of
# behaviour. Keep the fields in step with `Exchange.__init__`.
cimport cython

from gate.admission cimport decide, route
from gate.balancer cimport begin_request, end_request
from gate.h1 cimport RequestInfo, ResponseFraming, response_framing
from gate.h1heads cimport upstream_request_head
from gate.metrics cimport record_request
from gate.state cimport ProxyState, RouteRuntime


@cython.final
cdef class Exchange:
    cdef public object client, method, version, headers, request_id, upstream_target, up, target
    cdef public object target_stats, tried, body_buf, tunnel_buf, upstream_ms, upstream_key, headers_101
    cdef public bytes req_trailers
    cdef public RequestInfo info
    cdef public RouteRuntime rt
    cdef public ProxyState state
    cdef public ResponseFraming framing
    cdef public bint keep_alive, req_ended, response_started, finished, interim, sent_continue, retry_ok
    cdef public bint retried_stale, force_new, buffering
    cdef public Py_ssize_t body_buf_size, req_bytes, bytes_out, status
    cdef public double started, up_started

    cpdef start(self)
    cpdef admit(self, bint checked=*)
    cpdef choose(self)
    cpdef attach(self, conn, now=*)
    cpdef on_request_body(self, data)
    cpdef on_request_end(self)
    cpdef on_response_head(self, int status, reason, headers)
    cpdef on_response_body(self, data)
    cpdef on_response_end(self, trailers=*)
    cpdef _release_target(self, bint success)
    @cython.locals(ended=double, ms=double)
    cpdef _account(self)
