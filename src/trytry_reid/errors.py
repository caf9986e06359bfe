"""The project's error types: bad input reported in one line.

Every error the toolkit raises about the user's input (a config key, a dataset folder, an image, a
checkpoint, a request that cannot be served) derives from :class:`ReidError` as well as from the builtin
type that fits it (``ValueError``, ``OSError``, ...). The command line prints such an error, and any
``OSError`` from the file system, as one line with exit status 2; every other exception is a bug in the
toolkit and keeps its traceback.
"""


class ReidError(Exception):
    """Bad input, named in the message (the file, the key, the value and what was expected)."""


class UsageError(ReidError, ValueError):
    """A request that cannot be served as asked: conflicting flags, a value out of range, a missing part."""


class ConfigError(ReidError, ValueError):
    """A config that cannot run; the message names the key, the value and what was expected."""
