"""Each setting declared once: name, allowed values, default and one line of help.

The declarations (`Setting`, grouped by pipeline stage in `encluster.stages`) are the only
place a setting is described. From them come the estimator's parameters and their
validation (as scikit-learn's ``_parameter_constraints``), the keys a preset file may hold,
the fields of a run's ``config.json`` and the command line's flags, so that adding a
setting is one line and a test shows that none is missing anywhere.
"""

import argparse
import dataclasses
import math
import re
from dataclasses import dataclass
from numbers import Integral, Real

from .errors import ConfigError

@dataclass(frozen=True)
class Interval:
    """A number between `low` and `high` (None: unbounded); `closed` says which ends belong."""

    kind: type  # int or float
    low: float | None = None
    high: float | None = None
    closed: str = "both"  # "both", "left", "right" or "neither"

    def accepts(self, value):
        if isinstance(value, bool) or not isinstance(value, Integral if self.kind is int else Real):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        low_ok = self.low is None or value > self.low or (value == self.low and self.closed in ("both", "left"))
        high_ok = self.high is None or value < self.high or (value == self.high and self.closed in ("both", "right"))
        return low_ok and high_ok

    def describe(self):
        what = "an integer" if self.kind is int else "a number"
        shown = (lambda v: str(int(v))) if self.kind is int else (lambda v: f"{v:g}")
        if self.low is not None and self.high is not None:
            left, right = "[" if self.closed in ("both", "left") else "(", "]" if self.closed in ("both", "right") else ")"
            return f"{what} in {left}{shown(self.low)}, {shown(self.high)}{right}"
        if self.low is not None:
            return f"{what} {'>=' if self.closed in ('both', 'left') else '>'} {shown(self.low)}"
        if self.high is not None:
            return f"{what} {'<=' if self.closed in ('both', 'right') else '<'} {shown(self.high)}"
        return what

    def parse(self, text):
        try:
            return int(text) if self.kind is int else float(text)
        except ValueError:
            return None


@dataclass(frozen=True)
class Options:
    """One of a fixed set of strings."""

    values: tuple

    def accepts(self, value):
        return isinstance(value, str) and value in self.values

    def describe(self):
        return self.values[0] if len(self.values) == 1 else "one of " + ", ".join(self.values)

    def parse(self, text):
        return text if text in self.values else None


@dataclass(frozen=True)
class Sizes:
    """Layer widths: a non-empty sequence of positive integers (on the command line, ``500,500,2000``)."""

    def accepts(self, value):
        return (isinstance(value, (tuple, list)) and len(value) > 0
                and all(Interval(int, 1).accepts(v) for v in value))

    def describe(self):
        return "positive integers, e.g. 500,500,2000"

    def parse(self, text):
        try:
            return tuple(int(part) for part in text.split(","))
        except ValueError:
            return None


@dataclass(frozen=True)
class Pattern:
    """A string matching a regular expression as a whole, described in words."""

    regex: str
    description: str
    metavar: str = "TEXT"

    def accepts(self, value):
        return isinstance(value, str) and re.fullmatch(self.regex, value) is not None

    def describe(self):
        return self.description

    def parse(self, text):
        return text


@dataclass(frozen=True)
class Nothing:
    """None, with what it means (e.g. "a fresh seed" for random_state); never read from the command line."""

    meaning: str

    def accepts(self, value):
        return value is None

    def describe(self):
        return f"None ({self.meaning})"


@dataclass(frozen=True)
class Either:
    """Any value one of `parts` accepts."""

    parts: tuple

    def accepts(self, value):
        return any(part.accepts(value) for part in self.parts)

    def describe(self):
        return " or ".join(part.describe() for part in self.parts if not isinstance(part, Nothing))

    def parse(self, text):
        for part in self.parts:
            if not isinstance(part, Nothing) and (value := part.parse(text)) is not None and part.accepts(value):
                return value
        return None


@dataclass(frozen=True)
class Setting:
    """One setting of the pipeline.

    name : the estimator parameter, the preset key and the config.json field
    allowed : what values it takes (`Interval`, `Options`, `Sizes`, `Either`, `Nothing`)
    help : one line saying what it does
    default : its value when neither the user nor the preset gives one
    preset : whether a preset may set it; then the estimator's None means "the preset's"
    flag : the command-line flag, when not ``--name-with-dashes``
    cli_default : the command line's default, when it differs from the estimator's
    """

    name: str
    allowed: object
    help: str
    default: object = None
    preset: bool = True
    flag: str | None = None
    cli_default: object = None

    @property
    def option(self):
        return self.flag or "--" + self.name.replace("_", "-")

    def check(self, value):
        """`value`, if allowed; else a one-line ConfigError naming the setting and what it takes."""
        if not self.allowed.accepts(value):
            raise ConfigError(f"{self.name}={value!r}; expected {self.allowed.describe()}")
        return tuple(value) if isinstance(value, list) else value


def settings_class(name, settings, doc):
    """A frozen dataclass with one field per setting, checked on construction: a stage's settings."""

    def __post_init__(self):
        for setting in settings:
            object.__setattr__(self, setting.name, setting.check(getattr(self, setting.name)))

    cls = dataclasses.make_dataclass(name, [(s.name, object) for s in settings], frozen=True,
                                     namespace={"__post_init__": __post_init__, "__doc__": doc})
    cls.SETTINGS = tuple(settings)
    return cls


def take(cls, values):
    """Build the settings dataclass `cls` from the matching entries of `values`."""
    return cls(**{s.name: values[s.name] for s in cls.SETTINGS})


def _shown(value):
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def default_text(setting, preset_values):
    """How `--help` and the docs state a setting's default."""
    if setting.preset:
        return f"the preset's; {_shown(preset_values[setting.name])} in the default preset"
    return _shown(run_default(setting))


def add_flags(group, settings, preset_values):
    """Add one command-line flag per setting to an argparse group (none for a setting whose `flag`
    is ""). Each defaults to None, "not given": the run's config supplies the default, so a resumed
    run can tell an override from a default. `preset_values` shows the default preset's values."""
    for setting in settings:
        if setting.flag == "":
            continue
        allowed = "" if isinstance(setting.allowed, Options) else f"; {setting.allowed.describe()}"
        group.add_argument(setting.option, dest=setting.name, type=argument_type(setting.allowed, setting.name),
                           metavar=_metavar(setting.allowed), default=None,
                           help=f"{setting.help}{allowed} (default: {default_text(setting, preset_values)})"
                           .replace("%", "%%"))


def run_default(setting):
    """A setting's default in a run's config: the command line's, where it has its own (a fixed seed)."""
    if setting.preset:
        return None
    return setting.default if setting.cli_default is None else setting.cli_default


def _metavar(allowed, inside=False):
    if isinstance(allowed, Options):
        return "|".join(allowed.values) if inside else "{" + ",".join(allowed.values) + "}"
    if isinstance(allowed, Sizes):
        return "N,N,..."
    if isinstance(allowed, Interval):
        return "N" if allowed.kind is int else "X"
    if isinstance(allowed, Either):
        return "|".join(_metavar(part, inside=True) for part in allowed.parts if not isinstance(part, Nothing))
    return allowed.metavar


def argument_type(allowed, name):
    """An argparse `type` that reads a value `allowed` accepts, or says what it expected."""
    def parse(text):
        value = allowed.parse(text)
        if value is None or not allowed.accepts(value):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {allowed.describe()}")
        return value

    parse.__name__ = name  # argparse names the type in its messages
    return parse


def markdown_table(groups, preset_values):
    """The settings as one Markdown table per stage, for the README and the docs."""
    lines = []
    for title, settings in groups:
        lines += [f"**{title}**", "", "| setting | flag | allowed | default | what it does |", "|---|---|---|---|---|"]
        for s in settings:
            flag = f"`{s.option}`" if s.flag != "" else "(`-q` turns it off)"
            lines.append(f"| `{s.name}` | {flag} | {s.allowed.describe()} | {default_text(s, preset_values)} | "
                         f"{s.help} |")
        lines.append("")
    return "\n".join(lines)

