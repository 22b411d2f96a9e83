"""A run directory as a transaction: built in a hidden sibling folder and renamed into place
when complete, so an interrupted or killed run never leaves a folder that looks finished; the
sibling keeps the config and a checkpoint, so the run can be resumed."""

import json
import os
import shutil
from pathlib import Path

from .errors import RunDirError


class StagedDir:
    """A run directory built in a hidden sibling (``.NAME.partial``) and renamed into
    place on `commit`. An interrupted run's sibling stays, so it can be resumed."""

    def __init__(self, target, *, force=False, resume=False):
        self.target = _check_name(target)
        self.path = self.staging_path(self.target)
        self.created = []  # folders this run creates above the run directory, removed again if it fails
        if resume:
            if is_run(self.target):
                raise RunDirError(f"{self.target} is complete already; there is nothing to resume")
            if not (self.path / "config.json").is_file():
                what = "is not an encluster run" if self.target.exists() else "does not exist"
                raise RunDirError(f"{self.target} {what}, and no interrupted run of it is in {self.path}; give the "
                                  "--out of a run that was interrupted, or start it again without --resume")
            return
        if self.target.exists() and not force:
            raise RunDirError(f"{self.target} exists already; choose another --out or pass --force to replace it")
        if self.target.exists():
            _check_replaceable(self.target)
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
        target = _check_name(target)
        return target.with_name(f".{target.name}.partial")

    def commit(self):
        old = None
        if self.target.exists():
            _check_replaceable(self.target)  # checked again: something may have moved in while the run ran
            old = self.target.with_name(f".{self.target.name}.replaced")
            shutil.rmtree(old, ignore_errors=True)  # left by an earlier commit that was killed halfway
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


# What every finished run directory holds, and nothing but a run writes both.
RUN_FILES = ("config.json", "metrics.json")


def is_run(path):
    """True for a finished encluster run directory: a folder with its config.json, naming the encluster
    that wrote it, and its metrics.json."""
    path = Path(path)
    if not (path.is_dir() and all((path / name).is_file() for name in RUN_FILES)):
        return False
    try:
        return "encluster_version" in json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, TypeError):
        return False


def _check_name(target):
    """`target` as a path whose last part names the run's own folder: ``.``, ``..``, ``/`` and the
    empty name are where other things live, not a new run."""
    path = Path(target)
    if str(target).strip() == "" or path.name in ("", ".", ".."):
        raise RunDirError(f"--out {str(target)!r} names no folder of its own; give a new folder for the run, "
                          "e.g. --out runs/my-run")
    return path


def _check_replaceable(target):
    """Refuse to replace anything but an earlier run (or an empty folder): --force must not delete a
    user's files."""
    if target.is_dir() and (is_run(target) or not any(target.iterdir())):
        return
    if not target.is_dir():
        raise RunDirError(f"{target} is a file, not an encluster run; --force replaces only a run directory: "
                          "choose another --out")
    entries = sorted(p.name for p in target.iterdir())
    shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    raise RunDirError(f"{target} is not an encluster run (it holds {shown}); --force replaces only a run "
                      "directory: choose another --out")
