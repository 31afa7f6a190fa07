"""The one exception hierarchy of rankae-tagger.

Every error a user can cause derives from :class:`TaggerError`; its message says what is wrong and
what to do, and the CLI prints it on one line::

    TaggerError
    ├── ConfigError        a setting or flag is invalid
    ├── DataError          an input file or record is malformed (names file and line)
    ├── StoreError         Redis refused an operation that retrying cannot fix (auth, wrong mode, slots)
    └── ModelError         a model cannot be built, trained or used
        ├── CheckpointError  a checkpoint directory is missing, damaged or incompatible
        └── EncoderUnavailable  a model needs a text encoder whose package is not installed
"""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "DataError", "EncoderUnavailable", "ModelError", "StoreError",
           "TaggerError"]


class TaggerError(Exception):
    """Base of every error rankae-tagger raises on purpose."""


class ConfigError(TaggerError):
    """A setting, flag or environment variable has an invalid value."""


class DataError(TaggerError):
    """Input data is malformed; the message names the file and line (or record)."""


class StoreError(TaggerError):
    """Redis refused an operation for a reason retrying cannot fix; the message says what to change."""


class ModelError(TaggerError):
    """A model cannot be built, trained or used as asked."""


class CheckpointError(ModelError):
    """A checkpoint directory is missing, damaged or was written by an incompatible version."""


class EncoderUnavailable(ModelError):
    """A model needs a pretrained text encoder whose package (or runtime) is not installed."""
