"""Errors the CLI turns into a one-line message and exit code 2."""


class BenchmarkError(Exception):
    """Bad input or usage: the message names the thing and the fix; the CLI exits 2."""


class UnknownPluginError(BenchmarkError):
    """A plugin name that is not registered (the message carries did-you-mean suggestions)."""


class DataError(BenchmarkError):
    """A dataset file or root that cannot be used as it is."""


class CellFailure(Exception):
    """A cell produced an unusable result (NaN, wrong shape); recorded as that cell's failure."""
