"""The one error the data layer raises for missing, corrupt or unverified files."""


class DataError(RuntimeError):
    """A data file is missing, corrupt or fails verification; the message names it and the fix."""


def fetch_hint(name: str, root: str) -> str:
    return f"run `qsd-data fetch {name} --root {root}` (or `make data`)"
