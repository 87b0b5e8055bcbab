"""`fsctl`: the composition root (`fsctl serve` builds and wires every component on one uvloop loop)
and the command-line client of the console API."""

__version__ = "0.1.0"
