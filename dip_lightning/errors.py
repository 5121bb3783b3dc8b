"""The error type for bad user input: the CLI prints its message as one line and exits with status 2."""


class InputError(ValueError):
    """A problem with what the user gave (a file, a name, a size); the message says what to do."""
