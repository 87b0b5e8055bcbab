"""The kernel every component may import: settings, the SQLite store and its migrations, the event bus,
logging, errors, the clock, task ownership and the small ports components talk through.

`core` imports none of the project's other packages.
"""
