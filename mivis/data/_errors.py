"""The data layer's error, at the bottom of the data package (every data module may raise it)."""


class DataError(ValueError):
    """Missing, corrupt or unusable face data."""
