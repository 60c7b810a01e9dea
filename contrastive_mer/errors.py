"""Errors the command line reports as one line instead of a traceback."""


class UserError(Exception):
    """Bad input from the user (config, file, option); the message names what is wrong and what was expected."""


class ConfigError(UserError):
    """An invalid configuration; the message names the key (raised by the components that check their section)."""


class Interrupted(Exception):
    """A run stopped by a signal (SIGTERM, SIGINT): the command line prints the message (where the work done so far
    is and how to resume) and exits with ``128 + signum`` (143 for SIGTERM, 130 for SIGINT), never 0."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
