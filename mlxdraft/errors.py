"""Typed errors whose messages are written for the person at the keyboard.

The CLI turns every MlxdraftError into one `Error: ...` line; anything else is a bug.
"""


class MlxdraftError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class InvalidInputError(MlxdraftError):
    """A setting, file or argument the user gave cannot be used."""


class ModelNotFoundError(MlxdraftError):
    """A model name, path or repo id does not lead to a loadable model."""


class IncompatibleModelsError(MlxdraftError):
    """A target and draft cannot be used together for speculative decoding."""


class DownloadError(MlxdraftError):
    """A download from the Hugging Face Hub (or PyPI) failed."""


class ResumeMismatchError(MlxdraftError):
    """A results file was written with other settings than the ones asked for now."""


class ResultsLockedError(MlxdraftError):
    """Another mlxdraft process is writing the same results file."""


class MissingDependencyError(MlxdraftError):
    """An optional engine or server whose library is not installed: the message names the pip extra."""
