# C signatures for the compiled build (gate.accel): the client connection calls these in C.
cpdef int on_request(Py_ssize_t queued)
cpdef int after_response(bint close, bint closing, bint keep_alive, bint request_complete, Py_ssize_t queued,
                         bint error_pending)
cpdef int on_error(Py_ssize_t queued, bint last_complete)
