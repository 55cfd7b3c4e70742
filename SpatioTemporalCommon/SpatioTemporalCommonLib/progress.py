"""The progress and cancellation protocol shared by every logic and command.

A long job receives a :class:`Progress`. It calls it with a fraction in [0, 1] and a short
message; the call forwards both to the user's callback (a Slicer progress bar, a terminal bar) and
raises :class:`~SpatioTemporalCommonLib.errors.ProcessingCancelled` when the user asked to cancel.
Science functions take any ``callable(fraction, message)``, so a :class:`Progress` (or one of its
sub-ranges) can be passed to them directly.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import ProcessingCancelled

ProgressCallback = Callable[[float, str], None]


class Progress:
    """Report progress of a job and check for cancellation.

    Parameters
    ----------
    callback : callable(fraction, message), optional
        Receives the overall fraction done in [0, 1] and a message.
    is_cancelled : callable() -> bool, optional
        Polled at every report; when it returns True the report raises ``ProcessingCancelled``.
    start, stop : float
        The part of the overall range this object covers (used by :meth:`subrange`).
    """

    def __init__(
        self,
        callback: ProgressCallback | None = None,
        is_cancelled: Callable[[], bool] | None = None,
        start: float = 0.0,
        stop: float = 1.0,
    ) -> None:
        self._callback = callback
        self._is_cancelled = is_cancelled
        self._start = start
        self._stop = stop

    def __call__(self, fraction: float, message: str = "") -> None:
        """Report that ``fraction`` of this range is done; raise if the user cancelled."""
        if self._is_cancelled is not None and self._is_cancelled():
            raise ProcessingCancelled("cancelled by the user")
        if self._callback is not None:
            clipped = min(max(float(fraction), 0.0), 1.0)
            self._callback(self._start + clipped * (self._stop - self._start), message)

    def subrange(self, start: float, stop: float) -> Progress:
        """Return a ``Progress`` that maps its own [0, 1] onto [start, stop] of this one."""
        span = self._stop - self._start
        return Progress(
            self._callback,
            self._is_cancelled,
            self._start + start * span,
            self._start + stop * span,
        )


def as_progress(progress: Progress | ProgressCallback | None) -> Progress:
    """Wrap a plain callback (or None) into a :class:`Progress`."""
    if isinstance(progress, Progress):
        return progress
    return Progress(progress)
