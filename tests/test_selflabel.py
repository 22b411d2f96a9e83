"""The self-labelling stage: sure members, augmentation, the classifier's contract (fit, predict on
new points, save and load, determinism), and that it leaves a clustering it cannot improve alone.
Small data and short budgets: these check the contract, not the accuracy (docs/benchmarks.md)."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from encluster import EncodingClusterer, load_dataset, score
from encluster.errors import DataError, ModelError
from encluster.models import Classifier, ClassifierSpec
from encluster.stages import selflabel
from encluster.params import take
from encluster.stages.selflabel import augmented, random_affine, sure_members
from encluster.distributed import current

# The default preset's first stages, trained briefly, then a short self-labelling budget.
QUICK = {"epochs": 5, "steps": 0, "batch_size": 64, "selflabel": "on", "selflabel_steps": 150}


def _config(image_shape=None, **given):
    """The stage's configuration from its declared settings (self-labelling on), `given` changed."""
    declared = {**{s.name: s.default for s in selflabel.SETTINGS}, "selflabel": "on"}
    base = selflabel.config(take(selflabel.SelfLabelSettings, declared), image_shape, 64, "float32", 20, 100)
    return dataclasses.replace(base, **given)


@pytest.fixture(scope="module")
def digit_images():
    d = load_dataset("digits", scale=False)
    images = d.X.reshape(-1, 8, 8)
    order = np.random.default_rng(0).permutation(len(images))
    return images[order[:700]], d.y[order[:700]], images[order[700:1000]]


@pytest.fixture(scope="module")
def fitted(digit_images):
    X, _, _ = digit_images
    return EncodingClusterer(10, random_state=0, **QUICK).fit(X)


def test_images_are_relabelled_by_a_cnn_that_moved_what_it_says(fitted, digit_images):
    X, y, _ = digit_images
    est = fitted
    assert est.image_shape_ == (8, 8) and est.classifier_.spec.kind == "cnn"
    summary = est.selflabel_
    assert summary["classifier"] == "cnn" and summary["steps"] == 150 and summary["smoothing"] == 0.1
    assert summary["augmentation"] == {"shift": 0.09, "rotation": 10.0, "scale": 0.1}
    assert summary["moved"] == int((est.labels_ != est.clustered_labels_).sum())
    flows = sum(count for _, _, count in summary["moves"])
    assert flows == summary["moved"] if len(summary["moves"]) < 20 else flows < summary["moved"]
    assert 0 < summary["sure_members"] <= len(X) and len(summary["loss"]) == 2  # steps 100 and 150
    assert score(y, est.labels_)["nmi"] > 0.5
    # The centres follow the members: each is the mean code of its cluster.
    for c in np.unique(est.labels_):
        np.testing.assert_allclose(est.cluster_centers_[c], est.codes_[est.labels_ == c].mean(axis=0), rtol=1e-5)


def test_predict_uses_the_classifier_on_new_images_and_flattened_rows(fitted, digit_images):
    X, _, X_new = digit_images
    np.testing.assert_array_equal(fitted.predict(X), fitted.labels_)
    new = fitted.predict(X_new)
    assert new.shape == (len(X_new),) and set(new) <= set(range(10))
    np.testing.assert_array_equal(fitted.predict(X_new.reshape(len(X_new), -1)), new)
    with pytest.raises(DataError, match=r"images of shape \(4, 8\), but the model was fitted on images of shape \(8, 8\)"):
        fitted.predict(X_new[:, :4, :])
    with pytest.raises(DataError, match="features"):
        fitted.predict(X_new.reshape(len(X_new), -1)[:, :32])


def test_save_load_gives_the_same_predictions_and_refuses_a_damaged_classifier(fitted, digit_images, tmp_path):
    _, _, X_new = digit_images
    fitted.save(tmp_path / "model")
    loaded = EncodingClusterer.load(tmp_path / "model")
    assert loaded.classifier_ is not None and loaded.image_shape_ == (8, 8)
    assert loaded.selflabel_["moved"] == fitted.selflabel_["moved"]
    np.testing.assert_array_equal(loaded.predict(X_new), fitted.predict(X_new))
    # A classifier description that does not match its weights is refused, before building it.
    from encluster.fitted import Shape
    from encluster.persistence import META, WEIGHTS

    spec = fitted.classifier_.spec
    weights, meta = selflabel.Relabelling(fitted.classifier_, fitted.selflabel_).to_arrays()
    meta["classifier"] = {**spec.to_dict(), "width": 4096}
    with pytest.raises(ModelError, match="classifier"):
        selflabel.Relabelling.from_arrays(weights, meta, Shape(64, 10, 3, 2, tmp_path / WEIGHTS))
    meta = json.loads((tmp_path / "model" / META).read_text())
    assert meta["classifier"]["image_shape"] == [8, 8]


def test_the_same_seed_gives_the_same_labels_and_another_seed_other_weights(fitted, digit_images):
    X, _, _ = digit_images
    again = EncodingClusterer(10, random_state=0, **QUICK).fit(X)
    np.testing.assert_array_equal(again.labels_, fitted.labels_)
    for a, b in zip(again.classifier_.state_dict().values(), fitted.classifier_.state_dict().values()):
        assert torch.equal(a, b)


def test_a_clustering_it_cannot_improve_is_left_as_it_is(blobs):
    """Three far-apart blobs are clustered exactly already; the classifier (an MLP: rows) keeps them."""
    X, y = blobs
    est = EncodingClusterer(3, random_state=0, method="umap", selflabel="on", selflabel_steps=100).fit(X)
    assert est.classifier_.spec.kind == "mlp" and est.selflabel_["augmentation"] == {"feature_noise": 0.1}
    assert score(y, est.clustered_labels_)["acc"] == 1.0
    assert est.selflabel_["moved"] == 0 and score(y, est.labels_)["acc"] == 1.0


def test_label_smoothing_caps_the_classifiers_confidence_where_the_loss_is_lowest(blobs):
    """Cross-entropy with smoothing s is lowest where the taught cluster gets 1 - s + s/k: a classifier
    trained on three separable blobs settles there with s = 0.2, and well above it with no smoothing."""
    X, y = blobs
    scaled = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)

    def median_confidence(smoothing):
        config = _config(steps=400, width=16, smoothing=smoothing, noise=0.0)
        classifier, _ = selflabel.fit(scaled, np.arange(len(X)), y, 3, config, seed=0, device="cpu", group=current())
        with torch.no_grad():
            return float(classifier(torch.as_tensor(scaled)).softmax(dim=1).max(dim=1).values.median())

    target = 1 - 0.2 + 0.2 / 3
    assert abs(median_confidence(0.2) - target) < 0.01
    assert median_confidence(0.0) > target + 0.1


def test_progress_counts_the_classifiers_optimizer_steps_not_epochs(blobs, caplog):
    X, y = blobs
    config = _config(steps=200, width=8)
    with caplog.at_level("INFO", logger="encluster"):
        selflabel.fit(X, np.arange(len(X)), y, 3, config, seed=0, device="cpu", verbose=1, group=current())
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("self-labelling:")]
    assert [line.split()[1:3] for line in lines] == [["step", "100/200"], ["step", "200/200"]]


def test_auto_selflabels_images_only_and_off_leaves_labels_alone(digit_images):
    X, _, _ = digit_images
    settings_ = {**QUICK, "selflabel": "auto", "selflabel_steps": 10}
    rows = EncodingClusterer(10, random_state=0, **settings_).fit(X.reshape(len(X), -1))
    assert rows.classifier_ is None and rows.selflabel_ is None
    np.testing.assert_array_equal(rows.labels_, rows.clustered_labels_)
    images = EncodingClusterer(10, random_state=0, **settings_).fit(X.reshape(len(X), -1), image_shape=(8, 8))
    assert images.classifier_ is not None


def test_colour_images_of_another_size_get_a_cnn_with_three_channels():
    """Two kinds of 12x10 colour image (red or blue, with a dark square jittered on it, and noise) are
    told apart. Every image is its own: with only six distinct images of each kind (jitter and no
    noise, as this test had), UMAP's neighbour graph fell into one island per distinct image, and
    the two kinds were told apart or not depending on the CPU's rounding."""
    rng = np.random.default_rng(1)
    X = np.zeros((240, 12, 10, 3))
    y = np.repeat([0, 1], 120)
    for i, kind in enumerate(y):
        top, left = rng.integers(2, 5), rng.integers(1, 3)
        X[i, :, :, 0 if kind == 0 else 2] = 200
        X[i, top : top + 4, left : left + 4] = 0
    X = np.clip(X + rng.normal(0, 25, X.shape), 0, 255).astype(np.uint8)
    est = EncodingClusterer(2, random_state=0, **{**QUICK, "selflabel_steps": 60}).fit(X)
    assert est.image_shape_ == (12, 10, 3) and est.classifier_.features[0].in_channels == 3
    assert score(y, est.labels_)["acc"] == 1.0


def test_an_image_shape_that_does_not_fit_the_rows_is_refused(digit_images):
    X, _, _ = digit_images
    with pytest.raises(DataError, match="image_shape"):
        EncodingClusterer(10, **QUICK).fit(X.reshape(len(X), -1), image_shape=(8, 9))
    with pytest.raises(DataError, match="image_shape"):
        EncodingClusterer(10, **QUICK).fit(X, image_shape=(4, 16))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 6), st.integers(1, 8))
def test_sure_members_agree_with_all_their_neighbours_or_top_up_a_cluster(seed, k, n_neighbors):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(k, 300))
    labels = rng.integers(0, k, n)
    rows = np.sort(rng.choice(n, int(rng.integers(1, n + 1)), replace=False))
    graph = np.concatenate([np.arange(len(rows))[:, None], rng.integers(0, len(rows), (len(rows), n_neighbors))], 1)
    chosen = sure_members(graph, labels, rows, k, n_neighbors)
    assert set(chosen) <= set(rows) and len(set(chosen)) == len(chosen)
    agreement = selflabel.neighbour_agreement(graph, labels, rows)
    position = {r: i for i, r in enumerate(rows)}
    for cluster in range(k):
        members = rows[labels[rows] == cluster]
        picked = [r for r in chosen if labels[r] == cluster]
        sure = [r for r in members if agreement[position[r]] == 1]
        # Every sure row is taken, and no other where there are enough of them ...
        assert set(sure) <= set(picked)
        wanted = min(selflabel.MIN_MEMBERS, -(-len(members) // 2))  # at most half of a small cluster
        if len(sure) >= wanted:
            assert set(picked) == set(sure)
            continue
        # ... else the cluster's best-agreeing rows top it up: exactly as many as wanted, none worse than one left.
        assert len(picked) == wanted
        left = [agreement[position[r]] for r in members if r not in set(picked)]
        assert not left or min(agreement[position[r]] for r in picked) >= max(left)


def _images(n=8, side=16):
    rng = np.random.default_rng(0)
    return torch.as_tensor(rng.random((n, side * side)), dtype=torch.float32)


def test_augmentation_switched_off_returns_the_batch_and_each_switch_is_recorded():
    batch = _images()
    spec = ClassifierSpec(256, 3, 4, (16, 16))
    net = Classifier(spec)
    off = _config(image_shape=(16, 16), shift=0, rotation=0, scale=0)
    assert off.augmentation() == {}
    same = augmented(net, batch, torch.arange(8), off, torch.Generator().manual_seed(0), current(), None)
    assert same is batch
    rotation_only = _config(image_shape=(16, 16), shift=0, rotation=15, scale=0)
    assert rotation_only.augmentation() == {"rotation": 15}
    moved = augmented(net, batch, torch.arange(8), rotation_only, torch.Generator().manual_seed(0), current(), None)
    assert moved.shape == batch.shape and not torch.allclose(moved, batch)


def test_a_users_augmentation_reaches_the_classifier(digit_images, blobs):
    """Non-default augmentation settings are the ones recorded and the ones the random maps are drawn with."""
    X, _, _ = digit_images
    chosen = {"augment_shift": 0.2, "augment_rotation": 33.0, "augment_scale": 0.3}
    est = EncodingClusterer(10, random_state=2, **{**QUICK, "selflabel_steps": 10}, **chosen).fit(X)
    assert est.selflabel_["augmentation"] == {"shift": 0.2, "rotation": 33.0, "scale": 0.3}
    theta = random_affine(4000, est.selflabeling_, torch.Generator().manual_seed(0))
    angles = torch.rad2deg(torch.atan2(theta[:, 1, 0], theta[:, 0, 0])).abs()
    assert 31 < angles.max() <= 33 + 1e-4
    shifts = theta[:, :, 2].abs() / 2  # a shift of f of the side is 2f on affine_grid's [-1, 1]
    assert 0.19 < shifts.max() <= 0.2 + 1e-6
    zoom = 1 / theta[:, 0, :2].norm(dim=1)
    assert zoom.min() < 0.72 and zoom.max() > 1.28 and zoom.min() >= 0.7 - 1e-6 and zoom.max() <= 1.3 + 1e-6
    rows, _ = blobs
    noisy = EncodingClusterer(3, random_state=2, selflabel="on", selflabel_steps=10, feature_noise=0.5,
                              preset="original", epochs=1).fit(rows)
    assert noisy.selflabel_["augmentation"] == {"feature_noise": 0.5}


def test_a_shift_moves_an_image_by_whole_pixels_and_rotation_keeps_the_centre():
    theta = random_affine(4, _config(shift=0.0, rotation=0.0, scale=0.0), torch.Generator().manual_seed(0))
    np.testing.assert_allclose(theta.numpy(), np.tile([[1, 0, 0], [0, 1, 0]], (4, 1, 1)), atol=1e-7)
    # A shift of 1/8 of a 16-pixel side moves the content by 2 pixels.
    image = torch.zeros(1, 1, 16, 16)
    image[0, 0, 8, 8] = 1
    theta = torch.tensor([[[1.0, 0.0, 2 * 0.125], [0.0, 1.0, 0.0]]])
    grid = torch.nn.functional.affine_grid(theta, [1, 1, 16, 16], align_corners=False)
    moved = torch.nn.functional.grid_sample(image, grid, align_corners=False)
    assert moved[0, 0, 8, 6] == pytest.approx(1.0)
    angles = random_affine(1000, _config(shift=0.0, rotation=10.0, scale=0.1), torch.Generator().manual_seed(0))
    assert torch.all(angles[:, :, 2] == 0)
    zoom = 1 / angles[:, 0, :2].norm(dim=1)
    assert zoom.min() >= 0.9 - 1e-6 and zoom.max() <= 1.1 + 1e-6


@pytest.mark.parametrize("shape", [(8, 8), (28, 28), (64, 64, 3), (9, 13)])
def test_the_cnn_takes_images_from_8_to_64_pixels_grey_or_colour(shape):
    spec = ClassifierSpec(int(np.prod(shape)), 7, 8, shape)
    logits = Classifier(spec)(torch.rand(5, spec.n_features))
    assert logits.shape == (5, 7)


def test_the_classifier_learns_the_same_from_rows_kept_on_the_device_as_from_rows_read_each_step(
        device, digit_images, monkeypatch):
    """As the autoencoder's loop: the data whole on the device (a GPU with room) or read batch by
    batch must teach the same weights, forced here on whichever device runs the tests."""
    from encluster import training

    X, y, _ = digit_images
    data = X.reshape(len(X), -1).astype(np.float32) / 16
    members = np.arange(0, len(X), 2)
    config = _config(steps=120, width=4, image_shape=(8, 8))

    def train():
        classifier, history = selflabel.fit(data, members, y[members], 10, config, seed=0, device=device,
                                            group=current())
        return classifier, history

    monkeypatch.setattr(training, "resident_bytes", lambda device: 0)
    streamed, streamed_history = train()
    monkeypatch.setattr(training, "resident_bytes", lambda device: 1 << 40)
    resident, resident_history = train()
    assert resident_history == streamed_history and resident_history[-1] < resident_history[0]
    assert all(torch.equal(a, b) for a, b in zip(resident.state_dict().values(), streamed.state_dict().values()))
    labels = selflabel.classify(resident, data, device)
    assert (labels[members] == y[members]).mean() > 0.2  # it learned from its targets (chance: 0.1)
