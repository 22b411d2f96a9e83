import json

import numpy as np
import pytest
import torch
from sklearn.base import clone

from encluster import EncodingClusterer
from encluster.errors import ConfigError, DataError, ModelError, NotFittedError

# A small network and few epochs: these tests check the contract, not the quality.
SMALL = dict(preset="original", hidden=(32, 16), code_size=3, activation="relu", code_activation="linear", init="xavier", epochs=15,
             batch_size=32, learning_rate=3e-3, schedule="constant", n_init=3)


@pytest.fixture(scope="module")
def fitted(digits_small):
    X, _ = digits_small
    return EncodingClusterer(10, random_state=0, **SMALL).fit(X)


@pytest.fixture(scope="module")
def digits_small():
    from encluster import load_dataset

    d = load_dataset("digits", max_samples=400, random_state=0, scale=False)
    return d.X, d.y


def test_fit_sets_attributes(fitted, digits_small):
    X, _ = digits_small
    assert fitted.labels_.shape == (400,)
    assert fitted.cluster_centers_.shape == (10, 3)
    assert fitted.n_features_in_ == 64
    assert len(fitted.history_) == 15 and fitted.history_[-1] < fitted.history_[0]
    assert fitted.scaler_.mode == "minmax"  # digits hold 0..16 gray levels
    assert set(fitted.timings_) == {"train", "encode", "cluster", "confidence"}


def test_predict_on_training_data_gives_labels(fitted, digits_small):
    X, _ = digits_small
    assert np.array_equal(fitted.predict(X), fitted.labels_)
    assert np.allclose(fitted.transform(X), fitted.codes_)


def test_clusters_carry_information(fitted, digits_small):
    from sklearn.metrics import normalized_mutual_info_score

    _, y = digits_small
    # Random labels give NMI ~0.02 here; a working encoding gives far more.
    assert normalized_mutual_info_score(y, fitted.labels_) > 0.3


def test_same_seed_same_labels(digits_small):
    X, _ = digits_small
    a = EncodingClusterer(10, random_state=7, **SMALL).fit(X)
    b = EncodingClusterer(10, random_state=7, **SMALL).fit(X)
    assert np.array_equal(a.labels_, b.labels_)
    assert a.history_ == b.history_


def test_bfloat16_training_same_seed_same_labels_and_kept_on_save(digits_small, tmp_path):
    X, _ = digits_small
    a = EncodingClusterer(10, random_state=7, precision="bfloat16", **SMALL).fit(X)
    b = EncodingClusterer(10, random_state=7, precision="bfloat16", **SMALL).fit(X)
    assert np.array_equal(a.labels_, b.labels_) and a.history_ == b.history_
    assert a.history_[-1] < a.history_[0]
    a.save(tmp_path / "m")
    loaded = EncodingClusterer.load(tmp_path / "m")
    assert loaded.training_.precision == "bfloat16"
    assert np.array_equal(loaded.predict(X), a.labels_)


def test_precision_auto_records_what_it_chose(digits_small):
    from encluster.training import resolve_precision

    X, _ = digits_small
    est = EncodingClusterer(10, random_state=0, precision="auto", **{**SMALL, "epochs": 1}).fit(X)
    assert est.training_.precision == resolve_precision("auto", torch.device("cpu"))


def test_fit_leaves_global_rng_alone(digits_small):
    X, _ = digits_small
    torch.manual_seed(123)
    np.random.seed(123)
    expected_t, expected_n = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    EncodingClusterer(10, random_state=1, **{**SMALL, "epochs": 1}).fit(X)
    assert torch.equal(torch.rand(3), expected_t) and np.array_equal(np.random.rand(3), expected_n)


def test_seed_is_recorded_when_not_given(digits_small):
    X, _ = digits_small
    a = EncodingClusterer(10, **{**SMALL, "epochs": 2}).fit(X)
    b = EncodingClusterer(10, random_state=a.seed_, **{**SMALL, "epochs": 2}).fit(X)
    assert np.array_equal(a.labels_, b.labels_)


def test_save_load_predict_identical(fitted, digits_small, tmp_path):
    X, _ = digits_small
    fitted.save(tmp_path / "m")
    loaded = EncodingClusterer.load(tmp_path / "m")
    assert np.array_equal(loaded.predict(X), fitted.predict(X))
    assert np.array_equal(loaded.decode(loaded.cluster_centers_), fitted.decode(fitted.cluster_centers_))
    assert loaded.get_params() == {**fitted.get_params(), "hidden": list(SMALL["hidden"])}
    assert loaded.seed_ == fitted.seed_


def test_tampered_weights_are_refused(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        EncodingClusterer.load(tmp_path / "m")


def test_missing_model_file(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    (tmp_path / "m" / "model.json").unlink()
    with pytest.raises(ModelError, match="model.json is missing"):
        EncodingClusterer.load(tmp_path / "m")


def test_other_format_version_is_refused(fitted, tmp_path):
    import json

    fitted.save(tmp_path / "m")
    meta_path = tmp_path / "m" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 99  # checked before anything else, so the message names the version
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="format version 99"):
        EncodingClusterer.load(tmp_path / "m")


def test_shapes_that_do_not_match_the_config_are_refused(fitted, tmp_path):
    """Both files edited consistently (description re-signed): the shape check still refuses."""
    import hashlib
    import json

    from safetensors.torch import load_file, save_file

    fitted.save(tmp_path / "m")
    meta_path, weights = tmp_path / "m" / "model.json", tmp_path / "m" / "model.safetensors"
    meta = json.loads(meta_path.read_text())
    meta.pop("weights_sha256")
    meta["autoencoder"]["code_size"] = 4
    save_file(load_file(weights), weights, metadata={"encluster": json.dumps(meta, sort_keys=True)})
    meta["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="shapes do not match"):
        EncodingClusterer.load(tmp_path / "m")


def test_clone_and_params_are_untouched(fitted):
    params = fitted.get_params()
    assert params["epochs"] == 15 and params["random_state"] == 0 and params["batch_size"] == 32
    assert clone(fitted).get_params() == params
    assert not hasattr(clone(fitted), "labels_")


def test_not_fitted():
    with pytest.raises(NotFittedError, match="not fitted"):
        EncodingClusterer().predict(np.zeros((2, 3)))


def test_wrong_width_for_predict(fitted):
    with pytest.raises(DataError, match="has 10 features, but EncodingClusterer is expecting 64"):
        fitted.predict(np.zeros((2, 10)))


@pytest.mark.parametrize("X, kwargs, error, fragment", [
    (np.full((5, 3), np.nan), {}, DataError, "NaN"),
    (np.zeros((3, 4)), {"n_clusters": 5}, DataError, "more than the 3 samples"),
    (np.zeros((3, 4)), {"n_clusters": 0}, ConfigError, "n_clusters=0"),
    (np.zeros((0, 4)), {}, DataError, r"0 sample\(s\)"),
    (np.zeros(4), {}, DataError, "expected 2-D"),
    (np.zeros((6, 4)), {"n_clusters": 2}, DataError, "all 6 samples are identical"),
    (np.zeros((6, 4)), {"preset": "nope"}, ConfigError, "unknown preset"),
    (np.zeros((6, 4)), {"loss": "hinge"}, ConfigError, "loss='hinge'"),
    (np.zeros((6, 4)), {"corruption": 1.0}, ConfigError, r"corruption=1.0; expected a number in \[0, 1\)"),
    (np.zeros((6, 4)), {"corruption": "some"}, ConfigError, "corruption='some'"),
    (np.zeros((6, 4)), {"device": "cuda:7"} if not torch.cuda.is_available() else {"n_init": 0},
     ConfigError, "CUDA" if not torch.cuda.is_available() else "n_init"),
])
def test_bad_input_is_a_clear_error(X, kwargs, error, fragment):
    params = {**SMALL, "epochs": 1, **kwargs}
    n_clusters = params.pop("n_clusters", 2)
    with pytest.raises(error, match=fragment):
        EncodingClusterer(n_clusters, random_state=0, **params).fit(X)


def test_single_sample_one_cluster():
    est = EncodingClusterer(1, random_state=0, **{**SMALL, "epochs": 1, "n_init": 1}).fit(np.array([[0.2, 0.8]]))
    assert est.labels_.tolist() == [0]


def test_seed_preset_is_the_original_network():
    est = EncodingClusterer(10, preset="original", random_state=0, epochs=0).fit(np.random.default_rng(0).uniform(size=(20, 784)))
    sizes = [m.out_features for m in est.autoencoder_.modules() if isinstance(m, torch.nn.Linear)]
    assert sizes == [784, 64, 32, 3, 32, 64, 784]  # 7 dense layers, as in the original
    assert all(isinstance(m, torch.nn.Sigmoid) for m in est.autoencoder_.encoder[1::2])
    assert all(isinstance(m, torch.nn.Sigmoid) for m in est.autoencoder_.decoder[1::2])
    assert isinstance(est.autoencoder_.output_activation, torch.nn.Sigmoid)


def test_edited_model_json_is_refused(fitted, tmp_path):
    import json

    fitted.save(tmp_path / "m")
    meta_path = tmp_path / "m" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["seed"] += 1  # consistent with the weights' shapes, but not what was saved
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="does not match the description"):
        EncodingClusterer.load(tmp_path / "m")


@pytest.mark.parametrize("name", ["default", "umap-table", "idec-table"])
def test_a_model_saved_by_main_at_2384dab_loads_and_predicts_exactly_as_then(name, tmp_path):
    """tests/data/model-2384dab-*: written before the fitted state saved itself part by part. The
    default (CNN classifier, UMAP, mixture) on 300 digit images; umap and idec on 32 named columns
    of them (scaler, column names, refinement history). Every prediction is as it was then."""
    from pathlib import Path

    from encluster import load_dataset

    folder = Path(__file__).parent / "data" / f"model-2384dab-{name}"
    X = load_dataset("digits", scale=False).X[:300]
    model = EncodingClusterer.load(folder)
    if name == "default":
        assert model.image_shape_ == (8, 8) and model.classifier_ is not None
        predicted = model.predict(X.reshape(-1, 8, 8))
    else:
        names = [f"px{i}" for i in range(8, 40)]
        assert list(model.feature_names_in_) == names and model.scaler_.mode == "minmax"
        predicted = model.predict(X[:, 8:40].astype(np.float64), feature_names=names)
        assert (len(model.refinement_history_) > 0) == (name == "idec-table")
    np.testing.assert_array_equal(predicted, np.load(folder / "predict_digits_300.npy"))
    # Saved again by today's code, the description and every array are the ones written then.
    model.save(tmp_path / "again")
    then, now = (json.loads((f / "model.json").read_text()) for f in (folder, tmp_path / "again"))
    for meta in (then, now):
        for changing in ("encluster_version", "environment", "weights_sha256"):
            del meta[changing]
    # Settings declared since (space, unsure, unsure_below, selflabel_passes) are saved as unset; the confidence is
    # absent then, None now.
    added = {k: v for k, v in now["params"].items() if k not in then["params"]}
    assert set(added) == {"space", "unsure", "unsure_below", "selflabel_passes"} and set(added.values()) == {None}
    assert now.pop("confidence") is None and "confidence" not in then
    now["params"] = {k: v for k, v in now["params"].items() if k in then["params"]}
    assert now == then
    again = EncodingClusterer.load(tmp_path / "again")  # and the copy loads, without confidences as then
    assert again.confidence_temperature_ is None and again.method_ == model.method_
    from safetensors.numpy import load_file

    then, now = (load_file(f / "model.safetensors") for f in (folder, tmp_path / "again"))
    assert sorted(now) == sorted(then) and all(np.array_equal(now[k], then[k]) for k in then)


@pytest.mark.parametrize("name, agreement", [("original", 1.0), ("n2d", 0.99)])
def test_a_model_saved_by_encluster_0_1_0_before_the_stages_loads_and_predicts_as_then(name, agreement):
    """tests/data/model-0.1.0-*: written by the code before the settings were declared (presets
    named "seed", code_size None). It loads; k-means' assignments are exactly those of then; UMAP's
    placement has changed since on purpose (row-exact predict: float64 codes, a fixed schedule),
    which moved 2 of these 200 rows (measured)."""
    from pathlib import Path

    from encluster import load_dataset

    folder = Path(__file__).parent / "data" / f"model-0.1.0-{name}"
    X = load_dataset("digits", scale=False).X[:200]
    model = EncodingClusterer.load(folder)
    assert (model.predict(X) == np.load(folder / "predict_digits_200.npy")).mean() >= agreement
    assert model.get_params()["preset"] in ("seed", "n2d")
