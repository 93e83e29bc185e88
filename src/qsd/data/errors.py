"""The one error the data layer raises for missing, corrupt or unverified files."""


class DataError(RuntimeError):
    """A data file is missing, corrupt or fails verification; the message names it and the fix."""

