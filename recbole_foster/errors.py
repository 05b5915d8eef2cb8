"""Errors whose message tells the user what to change; ``run_foster.py`` prints them without a traceback."""


class DatasetError(ValueError):
    """A dataset that cannot be used as configured; the message says how to fix it."""
