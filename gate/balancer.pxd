# Direct-call functions for the compiled build (gate.accel); the .py stays the source of behaviour.
# `TargetHealth` stays a Python class (a dataclass shared with the control plane's views).

cpdef begin_request(t)
cpdef end_request(t, bint success)
