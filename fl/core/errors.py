"""Project exceptions: user mistakes and runtime failures the CLI turns into one clear line."""


class FedleakError(Exception):
    """A failure caused by the run itself (missing files, corrupt data, diverged training).

    The CLI prints the message on one line and exits with status 1.
    """


class ConfigError(FedleakError, ValueError):
    """A bad value supplied by the user (unknown name, out-of-range number, wrong type).

    The CLI prints the message on one line and exits with status 2, like a usage error.
    """


class DataError(FedleakError):
    """A dataset is missing, truncated or corrupt."""
