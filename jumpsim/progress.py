"""Progress reporters, passed in (as diffrax's ``progress_meter``) rather than switched by flags.

A reporter counts work against a total (``start``, ``update``, ``close``: a bar over seed-steps for
``jumpsim run``) and prints status lines (``note``: the iterations and flux phase of ``jumpsim rare``).
``NoProgress`` prints nothing; ``TqdmProgress`` draws a tqdm bar on stderr and prints notes there.
"""

from __future__ import annotations

import sys


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


def reporter(progress: bool | NoProgress) -> NoProgress:
    """The reporter for a ``progress`` argument: a reporter as it is, True a ``TqdmProgress``, False none."""
    if isinstance(progress, NoProgress):
        return progress
    return TqdmProgress() if progress else NoProgress()
