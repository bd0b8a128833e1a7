"""Stopping on SIGTERM and SIGINT: what a cluster sends at a time limit, and Ctrl-C.

:func:`stop_on_signals` turns either signal into :class:`~femurseg.errors.Terminated`
(a ``SystemExit`` with status 128 + signal number) raised in the main thread, so that
a long loop (a cohort of scans) stops at once, its ``finally`` blocks and atomic
writers clean up, and nothing unfinished is recorded as done. Inside Lightning's
``Trainer`` the SIGTERM handler is composed with Lightning's own (which records
``trainer.received_sigterm`` and, on SLURM, requeues the job): both run.

Examples
--------
>>> with stop_on_signals():   # doctest: +SKIP
...     segment_every_scan()
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from types import FrameType
from typing import Any

from femurseg.errors import Terminated

__all__ = ["STOP_SIGNALS", "signal_handlers", "stop_on_signals"]

#: the signals that stop femurseg's commands
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

Handler = Callable[[int, FrameType | None], Any]


@contextlib.contextmanager
def signal_handlers(handlers: Mapping[int, Handler]) -> Iterator[None]:
    """Install ``handlers`` for the block and restore the previous ones after it.

    Outside the main thread (where Python cannot install handlers) nothing is changed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in handlers}
    try:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Raise :class:`~femurseg.errors.Terminated` in the main thread on SIGTERM or SIGINT during the block."""
    with signal_handlers({signum: _raise_terminated for signum in STOP_SIGNALS}):
        yield
