"""Progress reporting that shows a bar on a terminal and stays quiet elsewhere.

The library never prints: with no terminal (a log file, CI, a notebook's captured
stderr) progress goes to `logging` once per epoch instead of a bar.
"""

import logging
import sys
from contextlib import contextmanager

log = logging.getLogger("encluster")


class _LogProgress:
    def __init__(self, description, unit):
        self.description, self.unit = description, unit

    def advance(self, steps=1, **fields):
        pass

    def epoch_done(self, epoch, epochs, **fields):
        details = " ".join(f"{k}={v:.4f}" for k, v in fields.items())
        log.info("%s: %s %d/%d %s", self.description, self.unit, epoch, epochs, details)


class _BarProgress(_LogProgress):
    def __init__(self, bar, task, description, unit):
        super().__init__(description, unit)
        self.bar, self.task = bar, task

    def advance(self, steps=1, **fields):
        self.bar.update(self.task, advance=steps, **fields)

    def epoch_done(self, epoch, epochs, **fields):
        self.bar.update(self.task, epoch=f"{epoch}/{epochs}", **fields)


@contextmanager
def progress(description, total, verbose, unit="epoch"):
    """Yield a reporter with `advance(steps, loss=...)` and `epoch_done(epoch, epochs, loss=...)`;
    `unit` names what `epoch_done` counts (a training measured in optimizer steps reports "step")."""
    if not verbose or not sys.stderr.isatty():
        yield _LogProgress(description, unit)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn(unit + " {task.fields[epoch]}"), TextColumn("loss {task.fields[loss]:.4f}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(description, total=total, epoch="-", loss=float("nan"))
        yield _BarProgress(bar, task, description, unit)
