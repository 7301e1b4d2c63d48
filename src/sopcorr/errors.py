"""Exceptions that carry a one-line, user-facing message naming the file, field or value at fault."""


class SopcorrError(Exception):
    """Base class: ``str(err)`` is the whole message shown to the user."""


class ConfigError(SopcorrError):
    """The configuration is invalid (unknown key, wrong type, out-of-range value)."""


class DatasetError(SopcorrError):
    """A dataset (annotation file, image) is malformed; the message names instance and field."""


class WeightsError(SopcorrError):
    """Backbone weights are missing or do not match the architecture."""
