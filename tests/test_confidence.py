"""Per-sample confidence: predict_proba's conventions, its calibration without labels, that it ranks
errors, that it is a sample's own and survives save/load, and the "unsure" label (-1)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from encluster import EncodingClusterer, load_dataset
from encluster import confidence
from encluster.errors import ModelError

QUICK = {"original": dict(preset="original", epochs=3),
         "umap": dict(preset="umap"),
         "classifier": dict(hidden=(32,), epochs=3, selflabel="on", selflabel_steps=60)}


@pytest.fixture(scope="module")
def digits():
    d = load_dataset("digits", scale=False)
    return d.X[:600].reshape(-1, 8, 8), d.y[:600], d.X[600:700].reshape(-1, 8, 8)


@pytest.fixture(scope="module")
def fitted(digits):
    X, _, _ = digits
    return {name: EncodingClusterer(10, random_state=0, **kw).fit(X) for name, kw in QUICK.items()}


@pytest.mark.parametrize("name, source", [("original", "centres"), ("umap", "mixture"), ("classifier", "classifier")])
def test_predict_proba_follows_scikit_learns_conventions_and_predict(fitted, digits, name, source):
    est, (_, _, X_new) = fitted[name], digits
    proba = est.predict_proba(X_new)
    assert proba.shape == (len(X_new), est.n_clusters_) and est.confidence_source_ == source
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (proba >= 0).all() and (proba.argmax(axis=1) == est.predict(X_new)).all()  # classes in order
    # Calibrated without labels: the training samples' mean confidence is their neighbours' agreement,
    # not 1.0 everywhere as the mixture's posteriors are.
    assert est.confidence_.mean() == pytest.approx(est.neighbour_agreement_, abs=1e-6)
    assert est.confidence_.min() < 0.9 and len(np.unique(est.confidence_.round(6))) > 50


@pytest.mark.parametrize("name", list(QUICK))
def test_a_samples_confidence_is_its_own_and_survives_save_and_load(fitted, digits, name, tmp_path):
    est, (_, _, X_new) = fitted[name], digits
    together = est.predict_proba(X_new)
    for i in range(0, len(X_new), 9):  # one row alone, as in a batch of 100
        np.testing.assert_allclose(est.predict_proba(X_new[i : i + 1])[0], together[i], rtol=1e-9, atol=1e-12)
    shuffled = np.random.default_rng(0).permutation(len(X_new))
    np.testing.assert_allclose(est.predict_proba(X_new[shuffled]), together[shuffled], rtol=1e-9, atol=1e-12)
    est.save(tmp_path / "m")
    loaded = EncodingClusterer.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict_proba(X_new), together)
    assert loaded.confidence_temperature_ == est.confidence_temperature_


def test_on_overlapping_groups_the_least_sure_hold_most_of_the_errors():
    """Three Gaussian groups that overlap: the errors are where they meet, which is where a sample's
    two likeliest clusters score alike. Labels only score it; benchmarks/confidence.py measures the
    whole pipeline's confidence on real sets."""
    from encluster.stages.cluster import gaussian_mixture, kmeans

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 300)
    X = np.array([[0, 0], [3, 0], [1.5, 2.6]])[y] + rng.normal(0, 1.0, (900, 2))
    labels, centers = kmeans(X, 3, n_init=5, random_state=0)
    _, mixture = gaussian_mixture(X, 3, random_state=0)
    for scores in (confidence.kernel_scores(X, centers), confidence.mixture_scores(mixture, X)):
        found = scores.argmax(axis=1)
        mapping = {c: np.bincount(y[found == c]).argmax() for c in range(3)}
        right = np.array([mapping[c] for c in found]) == y
        sure = confidence.probabilities(scores, confidence.temperature_for(scores, 0.8)).max(axis=1)
        order = np.argsort(sure, kind="stable")
        assert right[order[len(y) // 2:]].mean() > 0.97 > right.mean()  # the surest half is nearly all right
        assert (~right[order[: len(y) // 5]]).sum() > 0.5 * (~right).sum()  # the least sure fifth holds most errors


def test_unsure_marks_the_least_sure_share_in_fit_predict_and_new_samples_below_its_threshold(digits):
    X, _, X_new = digits
    est = EncodingClusterer(10, random_state=0, unsure=0.1, **QUICK["umap"])
    marked = est.fit_predict(X)
    assert (marked == -1).mean() == pytest.approx(0.1, abs=0.01)
    assert ((marked == -1) == (est.confidence_ < est.unsure_threshold_)).all()
    assert (marked[marked != -1] == est.labels_[marked != -1]).all() and (est.labels_ >= 0).all()
    predicted, sure = est.predict(X_new), est.predict_proba(X_new).max(axis=1)
    assert ((predicted == -1) == (sure < est.unsure_threshold_)).all()
    plain = EncodingClusterer(10, random_state=0, **QUICK["umap"]).fit(X)
    assert plain.unsure_threshold_ is None and (plain.predict(X_new) >= 0).all()
    # A threshold instead of a share: every sample below it, in training and in predict; with both, the higher.
    below = EncodingClusterer(10, random_state=0, unsure_below=0.8, **QUICK["umap"])
    marked = below.fit_predict(X)
    assert below.unsure_threshold_ == 0.8 and ((marked == -1) == (below.confidence_ < 0.8)).all()
    assert ((below.predict(X_new) == -1) == (below.predict_proba(X_new).max(axis=1) < 0.8)).all()
    both = EncodingClusterer(10, random_state=0, unsure=0.1, unsure_below=0.01, **QUICK["umap"]).fit(X)
    assert both.unsure_threshold_ == est.unsure_threshold_ > 0.01


def test_a_model_saved_before_confidences_predicts_but_refuses_predict_proba_in_one_line():
    folder = Path(__file__).parent / "data" / "model-2384dab-umap-table"
    model = EncodingClusterer.load(folder)
    X = load_dataset("digits", scale=False).X[:20, 8:40].astype(np.float64)
    names = [f"px{i}" for i in range(8, 40)]
    assert model.predict(X, feature_names=names).shape == (20,)
    with pytest.raises(ModelError, match="saved before encluster computed confidences; refit it"):
        model.predict_proba(X, feature_names=names)


def test_unsure_through_the_cli_run_and_predict(tmp_path):
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "encluster", "run", "--dataset", "digits", "--max-samples", "300",
                           "--preset", "umap", "--unsure", "0.2", "--no-plots", "--no-report", "--out", str(run)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assignments, sure = np.load(run / "assignments.npy"), np.load(run / "confidence.npy")
    metrics = json.loads((run / "metrics.json").read_text())["confidence"]
    assert (assignments == -1).mean() == pytest.approx(0.2, abs=0.02) == metrics["unsure_share"]
    assert ((assignments == -1) == (sure < metrics["unsure_threshold"])).all() and len(sure) == 300
    assert sum(metrics["histogram"]) == 300 and metrics["scores_of_the_sure"]["acc"] > 0
    said = " ".join(done.stdout.split())  # the terminal summary, unwrapped
    assert "% marked unsure (-1)" in said and "least sure tenth lie mostly between clusters" in said
    np.save(tmp_path / "new.npy", load_dataset("digits", scale=False).X[300:400])
    out = tmp_path / "labels.csv"
    done = subprocess.run([sys.executable, "-m", "encluster", "predict", "--model", str(run), str(tmp_path / "new.npy"),
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "cluster,confidence" and len(lines) == 101
    rows = [line.split(",") for line in lines[1:]]
    threshold = EncodingClusterer.load(run).unsure_threshold_
    assert all((int(c) == -1) == (float(p) < threshold) for c, p in rows)
    assert f"{sum(int(c) == -1 for c, _ in rows)} marked unsure (-1)" in done.stdout


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 40), st.integers(2, 8)), elements=st.floats(-50, 50)),
       st.floats(1e-3, 1e3))
def test_tempered_probabilities_sum_to_one_and_keep_the_likeliest_cluster(scores, temperature):
    proba = confidence.probabilities(scores, temperature)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    # The scores' best cluster is the most probable one (scores within float rounding of it may tie with it).
    rows = np.arange(len(scores))
    assert np.all(proba[rows, scores.argmax(axis=1)] == proba.max(axis=1))


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(5, 60), st.integers(2, 6)), elements=st.floats(-20, 20)),
       st.floats(0.55, 0.95))
def test_the_temperature_meets_a_reachable_target_mean_confidence(scores, target):
    k = scores.shape[1]
    hard = confidence.probabilities(scores, 10 ** confidence.LOG_TEMPERATURE_RANGE[0]).max(axis=1).mean()
    if not (1 / k + 1e-3 < target < hard - 1e-3):
        return  # out of reach: the ends of the range are returned (asserted below for this case too)
    temperature = confidence.temperature_for(scores, target)
    assert confidence.probabilities(scores, temperature).max(axis=1).mean() == pytest.approx(target, abs=1e-6)


def test_mixture_scores_match_scikit_learns_own_posteriors():
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(c, 1.0, (50, 3)) for c in (0, 2, 4)])
    mixture = GaussianMixture(3, random_state=0).fit(X)
    np.testing.assert_allclose(confidence.probabilities(confidence.mixture_scores(mixture, X), 1.0),
                               mixture.predict_proba(X), atol=1e-9)
