"""The one exception hierarchy of rankae-tagger.

Every error a user can cause derives from :class:`TaggerError`; its message says what is wrong and
what to do, and the CLI prints it on one line::

    TaggerError
    ├── ConfigError        a setting or flag is invalid
    ├── DataError          an input file or record is malformed (names file and line)
    └── ModelError         a model cannot be built, trained or used
        └── CheckpointError  a checkpoint directory is missing, damaged or incompatible
"""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "DataError", "ModelError", "TaggerError"]


class TaggerError(Exception):
    """Base of every error rankae-tagger raises on purpose."""


class ConfigError(TaggerError):
    """A setting, flag or environment variable has an invalid value."""


class DataError(TaggerError):
    """Input data is malformed; the message names the file and line (or record)."""


class ModelError(TaggerError):
    """A model cannot be built, trained or used as asked."""


class CheckpointError(ModelError):
    """A checkpoint directory is missing, damaged or was written by an incompatible version."""
