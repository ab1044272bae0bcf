"""Progress reporters, passed in (as diffrax's ``progress_meter``) rather than switched by flags.

A reporter counts work against a total (``start``, ``update``, ``close``: a bar over seed-steps for
``jumpsim run``) and prints status lines (``note``: the iterations and flux phase of ``jumpsim rare``).
``NoProgress`` prints nothing; ``TqdmProgress`` draws a tqdm bar on stderr and prints notes there.
"""

from __future__ import annotations

import sys
import time


class NoProgress:
    """Reports nothing (``--quiet``)."""

    quiet = True

    def start(self, total: int, desc: str) -> None:
        """Begin counting `total` units of work labelled `desc`."""

    def update(self, n: int) -> None:
        """`n` more units done."""

    def close(self) -> None:
        """The counted work is over (done or interrupted)."""

    def note(self, text: str) -> None:
        """A status line."""


class TqdmProgress(NoProgress):
    """A tqdm bar over seed-steps on stderr; notes as lines on stderr."""

    quiet = False

    def __init__(self):
        self.bar = None

    def start(self, total: int, desc: str) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=total,
            unit="seed-step",
            unit_scale=True,
            desc=desc,
            file=sys.stderr,
            dynamic_ncols=True,
            smoothing=0.1,
        )

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def note(self, text: str) -> None:
        print(text, file=sys.stderr)


class LineProgress(TqdmProgress):
    """Plain lines on stderr for logs (a batch job's output file): the counted work at most every `every`
    seconds and when done, no carriage returns; notes as lines."""

    def __init__(self, every: float = 30.0):
        self.every, self.total, self.done, self.desc, self.last, self.t0 = every, 0, 0, "", 0.0, 0.0

    def start(self, total: int, desc: str) -> None:
        self.total, self.done, self.desc = total, 0, desc
        self.t0 = self.last = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every or self.done >= self.total:
            rate = self.done / max(now - self.t0, 1e-9)
            print(
                f"{self.desc}: {self.done:,} of {self.total:,} seed-steps ({self.done / max(self.total, 1):.0%}), "
                f"{now - self.t0:.0f} s, {rate:,.0f} seed-steps/s",
                file=sys.stderr,
            )
            self.last = now

    def close(self) -> None:
        pass


def reporter(progress: bool | NoProgress) -> NoProgress:
    """The reporter for a ``progress`` argument: a reporter as it is, False none, True a tqdm bar on a terminal
    and plain lines when stderr is a file or a pipe (a batch job's log)."""
    if isinstance(progress, NoProgress):
        return progress
    if not progress:
        return NoProgress()
    return TqdmProgress() if sys.stderr.isatty() else LineProgress()
