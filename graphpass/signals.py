"""SIGINT, SIGTERM and SIGHUP unwind the command like Ctrl-C, so what it set up is cleaned up."""

from __future__ import annotations

import contextlib
import signal

SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class Signalled(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so temporary files are removed on the way."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def signals_unwind():
    """SIGINT (as KeyboardInterrupt), SIGTERM and SIGHUP raise where the program is, once: later
    ones are ignored, so the cleanup the first one starts runs to its end. Signals the caller
    ignores (nohup's SIGHUP) stay ignored; the caller's handlers come back afterwards."""

    def unwind(signum, frame):
        for s in saved:
            signal.signal(s, signal.SIG_IGN)
        raise KeyboardInterrupt if signum == signal.SIGINT else Signalled(signum)

    saved = {}
    with contextlib.suppress(ValueError):  # not the main thread: signals stay the caller's
        for s in SIGNALS:
            if signal.getsignal(s) is not signal.SIG_IGN:
                saved[s] = signal.signal(s, unwind)
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
