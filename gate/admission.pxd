# Typed signatures for the compiled build (gate.accel): the exchange calls these in C, with the route's
# runtime and the request head as typed structs. The .py stays the source of behaviour.
from gate.h1 cimport RequestInfo
from gate.state cimport RouteRuntime


cpdef object route(object snap, str scheme, RequestInfo info, bytes hop_id, object challenges)
cpdef object decide(RouteRuntime rt, bytes method, str scheme, str client_ip, RequestInfo info, list headers,
                    object clock, bint checked)
