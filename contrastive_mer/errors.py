"""Errors the command line reports as one line instead of a traceback."""


class UserError(Exception):
    """Bad input from the user (config, file, option); the message names what is wrong and what was expected."""


class ConfigError(UserError):
    """An invalid configuration; the message names the key (raised by the components that check their section)."""
