"""Errors that vsrzoo raises for bad user input.

Every error a user can cause (a missing path, a corrupt video, a weights file of the wrong kind, frames of
different sizes, ...) is raised as a subclass of :class:`ZooError` with a message that names the problem and
the offending path or value. The command line catches :class:`ZooError` and prints only the message, so a
user never sees a raw traceback from deep inside a library.
"""


def cause_chain(err: BaseException):  # noqa: ANN201 - Iterator[BaseException]
    """``err``, then its ``__cause__`` (or else ``__context__``), and so on; each exception once."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__


class ZooError(Exception):
    """Base class of every user-facing vsrzoo error.

    The most recently created instance is kept in ``ZooError.last`` so that the command line can recognise a
    ZooError that a library (jsonargparse, while instantiating classes from a config) re-raised as its own error
    with the message embedded.
    """

    last: "ZooError | None" = None

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        ZooError.last = self


class InputError(ZooError, ValueError):
    """Bad input data: missing or unreadable path, corrupt or unsupported file, inconsistent frames,
    a clip shorter than needed."""


class WeightsError(ZooError, ValueError):
    """A weights or checkpoint file that is missing, of the wrong kind, or does not match the network."""


class ConfigError(ZooError, ValueError):
    """Inconsistent options (e.g. an overlap not smaller than the chunk)."""


class TrainingError(ZooError, RuntimeError):
    """Training cannot go on: a non-finite loss or gradient (with ``nonfinite: stop``), or more skipped steps than
    allowed (``max_nonfinite_skips``). The message names the step and the loss terms."""
