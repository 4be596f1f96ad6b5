"""The one error type that the command line turns into a single line and exit status 2."""


class UsageError(Exception):
    """Bad user input: the message names the problem and what to do about it."""
