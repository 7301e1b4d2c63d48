"""Progress of long loops on the console *and* in the job's log.

A tqdm bar alone reaches the terminal only: the per-job logs under ``results/<run>/logs/`` (the
logging system's file handler, :func:`sopcorr.scriptutil.setup_logging`) stay empty while a job
runs. :func:`progress` is a drop-in for ``tqdm(...)`` that keeps the console bar and also writes
a line with the count, the rate and the time left into the logging system every ``interval``
seconds and once at the end::

    from sopcorr.progress import progress

    for pair in progress(pairs, desc=f"eval_pairs {category}", unit="pair", logger=log):
        ...

    bar = progress(total=steps, initial=start, desc="siamese", unit="step", disable=not show)
    bar.update(1); bar.set_postfix(loss="0.123"); bar.close()

``disable=True`` (tqdm's meaning) hides the console bar only; the log lines are still written,
and then they also reach the console, since there is no bar there to show the same thing.
While the bar is shown its log records carry ``record.progress_on_console = True``, which
:class:`ConsoleBarFilter` (installed on the console handler by ``setup_logging``) drops, so the
terminal shows the bar and the log file shows the lines.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any, Iterable, Iterator

DEFAULT_INTERVAL_S = 10.0
"""Seconds between two progress lines in the log (the last line is always written)."""

_log = logging.getLogger("sopcorr.progress")


def format_seconds(s: float) -> str:
    """'4.2 s', '3 min 07 s', '2 h 05 min' (s >= 0)."""
    if not math.isfinite(s):
        return "?"
    if s < 60:
        return f"{s:.1f} s"
    s = int(round(s))
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def format_rate(count: float, seconds: float, unit: str, unit_scale: bool = False) -> str:
    """'12.3 img/s', or '4.1 s/img' when slower than one per second; with ``unit_scale`` the
    count is given SI prefixes ('3.2 MB/s' for unit 'B')."""
    if count <= 0 or seconds <= 0:
        return f"? {unit}/s"
    rate = count / seconds
    if unit_scale:
        from tqdm import tqdm

        return f"{tqdm.format_sizeof(rate)}{unit}/s"
    if rate >= 1:
        return f"{rate:.3g} {unit}/s"
    return f"{1 / rate:.3g} s/{unit}"


def _fmt_count(n: float, unit_scale: bool) -> str:
    if unit_scale:
        from tqdm import tqdm

        return tqdm.format_sizeof(n)
    return f"{n:g}" if isinstance(n, float) and not n.is_integer() else str(int(n))


class ConsoleBarFilter(logging.Filter):
    """Drops the log records of a progress reporter whose tqdm bar is on the console (install
    it on the console handler; the file handler keeps them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "progress_on_console", False)


class Progress:
    """A tqdm console bar plus progress lines in the logging system (see the module docstring).

    Iterate it (when built with an iterable) or call :meth:`update`; :meth:`close` (or leaving a
    ``with`` block, or exhausting the iteration) writes the final line "N/total unit in T, rate".
    """

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None,
                 desc: str = "", unit: str = "it", initial: float = 0, disable: bool = False,
                 leave: bool = True, unit_scale: bool = False, logger: logging.Logger | None = None,
                 interval: float = DEFAULT_INTERVAL_S, level: int = logging.INFO, **tqdm_kwargs: Any):
        from tqdm.auto import tqdm

        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.unit_scale = unit_scale
        self.initial = initial
        self.n = initial
        self.logger = logger or _log
        self.interval = float(interval)
        self.level = level
        self.console = not disable
        self.postfix: dict[str, Any] = {}
        self._t0 = time.monotonic()
        self._last_log = self._t0
        self._closed = False
        self.bar = tqdm(total=total, desc=desc or None, unit=unit, initial=initial, disable=disable,
                        leave=leave, unit_scale=unit_scale, **tqdm_kwargs)

    # -- tqdm-compatible surface -------------------------------------------------------------
    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("Progress built without an iterable is not iterable; call update()")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError("progress of unknown total has no len()")
        return int(self.total)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)

    def update(self, n: float = 1) -> None:
        """Count ``n`` more units; write a log line when ``interval`` seconds have passed."""
        self.n += n
        self.bar.update(n)
        now = time.monotonic()
        if now - self._last_log >= self.interval and not self._closed:
            self._last_log = now
            self._emit(now, final=False)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        """Like tqdm's: shown on the bar and appended to the log lines ('loss=0.123')."""
        self.postfix = {**(ordered_dict or {}), **kwargs}
        self.bar.set_postfix(self.postfix, refresh=refresh)

    def set_description(self, desc: str) -> None:
        self.desc = desc
        self.bar.set_description(desc)

    def close(self, failed: bool = False) -> None:
        """Close the bar and write the final line (once)."""
        if self._closed:
            return
        self._closed = True
        self.bar.close()
        self._emit(time.monotonic(), final=True, failed=failed)

    # -- the log line --------------------------------------------------------------------------
    def line(self, now: float | None = None, final: bool = False, failed: bool = False) -> str:
        """The text of a progress line at time ``now`` (monotonic seconds)."""
        now = time.monotonic() if now is None else now
        elapsed = max(0.0, now - self._t0)
        done = self.n - self.initial
        head = f"{self.desc}: " if self.desc else ""
        if self.unit_scale:  # '3.00MB/12.0MB'
            count = f"{_fmt_count(self.n, True)}{self.unit}"
            if self.total is not None:
                count += f"/{_fmt_count(self.total, True)}{self.unit}"
        else:  # '3/12 img'
            count = _fmt_count(self.n, False)
            if self.total is not None:
                count += f"/{_fmt_count(self.total, False)}"
            count += f" {self.unit}"
        if self.total:
            count += f" ({100.0 * self.n / self.total:.0f}%)"
        parts = [f"{head}{count} in {format_seconds(elapsed)}",
                 format_rate(done, elapsed, self.unit, self.unit_scale)]
        if not final and self.total is not None and done > 0 and elapsed > 0:
            left = (self.total - self.n) * elapsed / done
            parts.append(f"about {format_seconds(max(0.0, left))} left")
        if self.postfix:
            parts.append(" ".join(f"{k}={v}" for k, v in self.postfix.items()))
        text = ", ".join(parts)
        if final:
            text += " (stopped)" if failed else " (done)"
        return text

    def _emit(self, now: float, final: bool, failed: bool = False) -> None:
        self.logger.log(self.level, self.line(now, final, failed),
                        extra={"progress_on_console": self.console})


def progress(iterable: Iterable | None = None, **kwargs: Any) -> Progress:
    """``tqdm(iterable, **kwargs)`` that also writes progress lines into the logging system.

    Extra keywords beyond tqdm's: ``logger`` (default ``sopcorr.progress``), ``interval``
    (seconds between log lines, default :data:`DEFAULT_INTERVAL_S`), ``level`` (logging.INFO).
    """
    return Progress(iterable, **kwargs)


@contextlib.contextmanager
def counting(progress: "bool | Progress", *, total: float | None, desc: str, unit: str = "it",
             logger: logging.Logger | None = None) -> Iterator[Progress]:
    """The reporter a library loop counts into, from its ``progress`` argument: a
    :class:`Progress` of the caller (a job with several loops sharing one count: it is used
    as it is and left open), else a new one of ``total`` units that writes its lines into the
    log and shows a console bar when ``progress`` is true (closed on leaving the block)::

        with counting(progress, total=len(pairs), desc=f"pairs {cat}", unit="pair", logger=log) as bar:
            for pair in pairs:
                ...
                bar.update(1)
    """
    if isinstance(progress, Progress):
        yield progress
        return
    with Progress(total=total, desc=desc, unit=unit, disable=not progress, logger=logger) as bar:
        yield bar
