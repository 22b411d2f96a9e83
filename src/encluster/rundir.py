"""A run directory as a transaction: built in a hidden sibling folder and renamed into place
when complete, so an interrupted or killed run never leaves a folder that looks finished; the
sibling keeps the config and a checkpoint, so the run can be resumed."""

import os
import shutil
from pathlib import Path

from .errors import RunDirError


class StagedDir:
    """A run directory built in a hidden sibling (``.NAME.partial``) and renamed into
    place on `commit`. An interrupted run's sibling stays, so it can be resumed."""

    def __init__(self, target, *, force=False, resume=False):
        self.target = Path(target)
        self.path = self.staging_path(self.target)
        self.created = []  # folders this run creates above the run directory, removed again if it fails
        if resume:
            if self.target.exists():
                raise RunDirError(f"{self.target} is complete already; there is nothing to resume")
            if not (self.path / "config.json").is_file():
                raise RunDirError(f"no interrupted run of {self.target} to resume (looked for {self.path}); "
                                  "start it again without --resume")
            return
        if self.target.exists() and not force:
            raise RunDirError(f"{self.target} exists already; choose another --out or pass --force to replace it")
        if self.path.exists():
            if not force:
                raise RunDirError(f"an interrupted run of {self.target} is in {self.path}; continue it with "
                                  f"--resume {self.target} or pass --force to start over")
            shutil.rmtree(self.path)
        self.created = [p for p in self.target.parents if not p.exists()][::-1]
        try:
            self.path.mkdir(parents=True)
        except OSError as exc:
            raise RunDirError(f"cannot write to {self.target.parent} ({exc.strerror}); choose a writable --out") from None

    @staticmethod
    def staging_path(target):
        """Where the run directory `target` is built before it is complete."""
        target = Path(target)
        return target.with_name(f".{target.name}.partial")

    def commit(self):
        old = None
        if self.target.exists():
            old = self.target.with_name(f".{self.target.name}.replaced")
            os.replace(self.target, old)
        os.replace(self.path, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self):
        shutil.rmtree(self.path, ignore_errors=True)
        for folder in reversed(self.created):
            try:
                folder.rmdir()
            except OSError:
                break  # not empty: something else lives there now
