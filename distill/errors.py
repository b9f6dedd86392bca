"""Errors that end a run with a one-line message instead of a stack trace."""


class ConfigError(ValueError):
    """Bad input (config, data, checkpoint): each line names a field or file and the fix."""
