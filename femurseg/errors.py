"""The exceptions femurseg raises. One module, one hierarchy."""

from __future__ import annotations

__all__ = ["FemursegError", "ManifestError", "DataError", "CheckpointError", "ThresholdsError", "AnalysisError", "CalibrationError",
           "BackendError", "Terminated"]


class FemursegError(Exception):
    """Base class of every error femurseg raises on purpose."""


class ManifestError(FemursegError):
    """The manifest, or a subject it lists, cannot be used.

    The message names the subject, the file and what is wrong. When several
    problems were found, ``problems`` holds one line per problem.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class DataError(FemursegError):
    """An image or label file cannot be read or has unusable content."""


class CheckpointError(FemursegError):
    """A checkpoint is missing, unsafe, or incompatible with the others."""


class ThresholdsError(FemursegError):
    """A decoding-thresholds file is unreadable or belongs to other checkpoints."""


class BackendError(FemursegError):
    """An inference backend is not installed or cannot run a network (the message names the extra to install)."""


class AnalysisError(FemursegError):
    """A scan and label map cannot be analysed (no femur, label from another grid, ...)."""


class CalibrationError(AnalysisError):
    """No trustworthy HU → density line: phantom or rods not found, rods cut by the field of
    view, or a fit below the quality gate. The message says which and why."""


class Terminated(SystemExit):
    """A signal (SIGTERM, SIGINT) stopped the work before it was complete.

    A ``SystemExit`` whose code is the shell's ``128 + signal number`` (143 for
    SIGTERM, 130 for SIGINT): it passes every ``except Exception`` (a per-subject
    error handler must not swallow it) and ends the process with that status and
    no traceback. Whatever was unfinished is never marked done.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + int(signum))
        self.signum = int(signum)

    def __str__(self) -> str:
        import signal

        try:
            name = signal.Signals(self.signum).name
        except ValueError:
            name = f"signal {self.signum}"
        return f"stopped by {name}"
