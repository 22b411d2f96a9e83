"""The settings are declared once: every estimator parameter has a flag, a config.json field and
a line in the README, each preset names only declared settings, and each value travels intact."""

import dataclasses
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.utils.estimator_checks import estimator_checks_generator

from encluster import EncodingClusterer
from encluster.cli import build_parser
from encluster.errors import ConfigError
from encluster.params import Either, Interval, Options, Sizes
from encluster.presets import ALIASES, DEFAULT_PRESET, PRESET_NAMES, read_preset
from encluster.stages import get_preset
from encluster.runs import RunConfig
from encluster.stages import GROUPS, METHODS, SETTINGS

DOCS = Path(__file__).parent.parent / "docs"
PARAMETERS = [name for name in inspect.signature(EncodingClusterer).parameters]
# The one parameter without a flag of its own: the command line's -q/--quiet sets it.
NO_FLAG = {"verbose"}


def _run_parser():
    return build_parser()._subparsers._group_actions[0].choices["run"]


def test_every_parameter_has_a_flag_and_every_setting_flag_a_parameter():
    dests = {action.dest for action in _run_parser()._actions}
    assert set(PARAMETERS) - NO_FLAG <= dests, f"parameters without a flag: {set(PARAMETERS) - NO_FLAG - dests}"
    setting_flags = {a.dest for group in _run_parser()._action_groups if group.title in dict(GROUPS)
                     for a in group._group_actions}
    assert setting_flags == set(PARAMETERS) - NO_FLAG


def test_every_parameter_is_a_config_field_and_back():
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    assert set(PARAMETERS) - NO_FLAG <= fields
    config = RunConfig(n_neighbors=7, hidden=(32, 16), refine_tol=0.01)
    est = config.estimator()
    assert (est.n_neighbors, est.hidden, est.refine_tol) == (7, (32, 16), 0.01)
    assert set(est.get_params()) == set(PARAMETERS)


def test_auto_scaling_keeps_an_image_run_on_the_unit_interval():
    """Images share one scale and the report shows them on [0, 1]: a run of images takes "auto" as
    "minmax", whatever their dtype; a table keeps "auto" (z-score unless bounded)."""
    config = RunConfig(scaling="auto")
    assert config.estimator(images=True).scaling == "minmax" and config.estimator().scaling == "auto"
    assert RunConfig(scaling="standard").estimator(images=True).scaling == "standard"  # as asked


def test_a_flag_reaches_the_estimator_through_config_json(tmp_path):
    from encluster.cli import _run_config

    args = _run_parser().parse_args(["--n-neighbors", "7", "--hidden", "64,32", "--umap-epochs", "auto",
                                     "--clusters", "auto", "--seed", "3"])
    config = _run_config(args)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"run": dataclasses.asdict(config)}))
    est = RunConfig.from_json(path).estimator()
    assert (est.n_neighbors, tuple(est.hidden), est.umap_epochs, est.n_clusters, est.random_state) == \
        (7, (64, 32), "auto", "auto", 3)
    assert est.epochs is None and est.preset == DEFAULT_PRESET  # not given: the preset's


def test_a_config_written_before_the_declarations_still_reads(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"run": {"dataset": "digits", "preset": "seed", "seed": 4, "epochs": 3}}))
    config = RunConfig.from_json(path)
    assert (config.random_state, config.preset, config.epochs) == (4, "seed", 3)


def test_help_states_each_settings_range_and_default():
    text = " ".join(_run_parser().format_help().split())
    assert "--n-neighbors N|auto UMAP's neighbourhood" in text
    assert "an integer >= 2 or auto (default: the preset's; auto in the default preset)" in text
    assert "--unsure X mark the least sure share" in text and "(default: the preset's; 0.0 in the default" in text
    assert "--clusters N|auto" in text and "(default: 10)" in text


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_names_declared_settings_with_allowed_values(name):
    values = get_preset(name)
    assert set(values) == {s.name for s in SETTINGS if s.preset}
    assert values["method"] in METHODS or values["method"] == "auto"


def test_seed_is_the_former_name_of_original():
    assert ALIASES == {"seed": "original"} and get_preset("seed") == get_preset("original")
    assert read_preset("original")["method"] == "kmeans"


def test_a_preset_with_an_unknown_setting_is_refused(monkeypatch):
    from encluster import presets

    monkeypatch.setattr(presets, "read_preset", lambda name: {"method": "n2d", "n_neigbours": 5})
    with pytest.raises(ConfigError, match=r"unknown settings \['n_neigbours'\]"):
        get_preset("n2d")


def test_the_docs_show_every_setting_and_every_flag_generated_from_the_code():
    """docs/hooks.py fills the methods page's settings table and the CLI reference when the site is
    built; both come from the declarations, so every setting and flag is there."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("hooks", DOCS / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    methods = hooks.on_page_markdown((DOCS / "methods.md").read_text())
    cli = hooks.on_page_markdown((DOCS / "cli.md").read_text())
    assert "{{" not in methods and "{{" not in cli
    for setting in SETTINGS:
        assert f"| `{setting.name}` |" in methods
        if setting.flag != "":
            assert setting.option in cli
    for command in ("encluster run", "encluster predict", "encluster report", "encluster compare", "encluster datasets"):
        assert f"## `{command}`" in cli


def _example(allowed, draw):
    """A value `allowed` accepts, drawn by hypothesis."""
    if isinstance(allowed, Options):
        return draw(st.sampled_from(allowed.values))
    if isinstance(allowed, Sizes):
        return tuple(draw(st.lists(st.integers(1, 4096), min_size=1, max_size=4)))
    if isinstance(allowed, Either):
        return _example(draw(st.sampled_from([p for p in allowed.parts if hasattr(p, "kind") or
                                               isinstance(p, (Options, Sizes))])), draw)
    if isinstance(allowed, Interval):
        low = allowed.low if allowed.low is not None else -1e6
        high = allowed.high if allowed.high is not None else 1e6
        if allowed.kind is int:
            return draw(st.integers(int(low), int(min(high, 2**31))))
        return draw(st.floats(low, high, exclude_min=allowed.closed in ("right", "neither"),
                              exclude_max=allowed.closed in ("left", "neither")))
    return "cpu"  # the device pattern


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_allowed_value_survives_the_command_line(data):
    """Each setting's flag reads back exactly the value written as text, and the setting accepts it."""
    setting = data.draw(st.sampled_from([s for s in SETTINGS if s.flag != ""]))
    value = _example(setting.allowed, data.draw)
    text = ",".join(map(str, value)) if isinstance(value, tuple) else repr(value) if isinstance(value, float) \
        else str(value)
    args = _run_parser().parse_args([setting.option, text])
    assert getattr(args, setting.name) == value
    assert setting.check(value) == value


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([s for s in SETTINGS if isinstance(s.allowed, Interval)]), st.integers(-10, 10))
def test_out_of_range_values_are_refused_by_name(setting, offset):
    low = setting.allowed.low
    bad = (low - 1 - abs(offset)) if low is not None else None
    if bad is None:
        return
    with pytest.raises(ConfigError, match=f"^{setting.name}="):
        setting.check(setting.allowed.kind(bad))


def _check_name(check):
    return getattr(check, "func", check).__name__


# scikit-learn's own estimator checks, on a network small enough to fit in a fraction of a second.
TINY = EncodingClusterer(3, preset="original", hidden=(8,), code_size=2, decoder_hidden=(8,), epochs=2, batch_size=16,
                         n_init=1, random_state=0)


# Left out: check_array_api_input, which only runs with SCIPY_ARRAY_API set (else it skips itself);
# array API inputs (CuPy arrays, torch tensors) are not taken: encluster reads rows as NumPy arrays.
CHECKS = [(estimator, check) for estimator, check in estimator_checks_generator(TINY)
          if _check_name(check) != "check_array_api_input"]


@pytest.mark.parametrize("estimator, check", CHECKS, ids=[_check_name(check) for _, check in CHECKS])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_fit_transform_is_fit_then_transform():
    X = np.random.default_rng(0).uniform(size=(40, 6))
    assert np.array_equal(TINY.fit_transform(X), TINY.fit(X).transform(X))


def test_a_method_is_a_choice_of_declared_stages():
    from encluster.stages import Pipeline

    assert {m: (p.encoder, p.embedding, p.clustering, p.refinement) for m, p in METHODS.items()} == {
        "kmeans": (True, False, "kmeans", None), "n2d": (True, True, "gmm", None),
        "dec": (True, False, "kmeans", "dec"), "idec": (True, False, "kmeans", "idec"),
        "umap": (False, True, "gmm", None)}
    with pytest.raises(ValueError, match="no such stage"):
        Pipeline(encoder=True, embedding=False, clustering="dbscan")


def test_the_configurations_a_stage_builds_have_no_defaults_of_their_own():
    """A default lives in its setting's declaration (or a preset's TOML), nowhere else: every *Config and
    *Spec dataclass, and UMAP's wrapper, takes every value from its caller."""
    import dataclasses
    import importlib
    import inspect
    import pkgutil

    import encluster
    from encluster.stages.embed import UmapEmbedding

    found = {}
    for info in pkgutil.walk_packages(encluster.__path__, "encluster."):
        if info.name == "encluster.__main__":
            continue
        for name, obj in vars(importlib.import_module(info.name)).items():
            # RunConfig is made from the declarations themselves (its defaults are theirs, None for a preset's).
            if dataclasses.is_dataclass(obj) and name.endswith(("Config", "Spec")) and obj.__module__ == info.name \
                    and name != "RunConfig":
                found[name] = obj
    assert {"TrainingConfig", "AutoencoderSpec", "ClassifierSpec", "RefinementConfig", "SelfLabelConfig"} <= set(found)
    for name, cls in found.items():
        defaulted = [f.name for f in dataclasses.fields(cls)
                     if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
        assert not defaulted, f"{name} has defaults of its own: {defaulted}"
    parameters = inspect.signature(UmapEmbedding.__init__).parameters.values()
    assert all(p.default is inspect.Parameter.empty for p in parameters)
