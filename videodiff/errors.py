"""The error type for runs that cannot work as configured.

Raised before training starts (while the model, data and callbacks are built and set up); ``videodiff fit``
prints it as one line, ``error: <message>``, and exits with code 2, instead of a traceback. Messages name the
file or config key at fault and what to change.
"""


class ConfigError(ValueError):
    """The configuration (a config key, a checkpoint given in it, a size) cannot work."""
