"""Stopping a run cleanly on SIGTERM or Ctrl-C: at the next step boundary, ``last.pt`` saved."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class TrainingStopped(Exception):
    """A run stopped by a signal (SIGTERM, SIGINT) at a step boundary, ``last.pt`` saved;
    ``signal`` is the signal's number."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal = int(signal_number)


@contextlib.contextmanager
def stopping_on_signals(trainer) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT set ``trainer.stop_signal`` (the trainer stops after
    its current step; a second signal stops at once); the previous handlers come back
    afterwards. Does nothing outside the main thread, and leaves an ignored signal ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request(number, frame):
        if trainer.stop_signal is not None:
            raise KeyboardInterrupt
        trainer.stop_signal = number

    previous = {}
    for number in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(number) is not signal.SIG_IGN:
            previous[number] = signal.signal(number, request)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
