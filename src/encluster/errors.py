"""The exceptions encluster raises on purpose.

Every message is one line that says what is wrong, where, and how to fix it, so the
CLI can show it as-is without a traceback.
"""

import sklearn.exceptions


class EnclusterError(Exception):
    """Base class: anything encluster rejects on purpose."""


class DataError(EnclusterError, ValueError):
    """Input data is missing, unreadable, malformed or unusable."""


class DataTypeError(DataError, TypeError):
    """Input data holds values that are not numbers at all (scikit-learn raises TypeError here)."""


class ChecksumError(DataError):
    """A file's content does not match its pinned checksum."""


class OfflineError(DataError):
    """A data set is not on disk and may not (or cannot) be downloaded."""


class ModelError(EnclusterError, ValueError):
    """A saved model is missing files, tampered with, or does not fit the data."""


class NotFittedError(EnclusterError, sklearn.exceptions.NotFittedError):
    """The estimator is used before `fit` (scikit-learn's own NotFittedError, so its tools recognise it)."""


class ConfigError(EnclusterError, ValueError):
    """A parameter or configuration value is out of range or inconsistent."""


class RunDirError(EnclusterError, OSError):
    """The output directory exists already or cannot be written."""


class TrainingDiverged(ConfigError):
    """A network's loss or codes became NaN or infinite: a setting (most often the learning rate) is too large."""
