"""Saving and loading a fitted `EncodingClusterer` without pickle.

A model is a folder with two files: ``model.safetensors`` (every array: network
weights, cluster centres, scaler range) and ``model.json`` (architecture, settings,
version, and the sha256 of the weights file). Loading parses JSON and safetensors
only, so a shared model cannot run code; the checksum and shape checks refuse a file
that was altered or belongs to another model.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from . import __version__
from .atomic import atomic_write, atomic_write_json
from .errors import ModelError
from .models import AutoencoderSpec
from .provenance import environment
from .scaling import MODES, Scaler
from .stages import cluster, embed, encode, selflabel
from .training import TrainingConfig

FORMAT = "encluster-model"
FORMAT_VERSION = 2
WEIGHTS = "model.safetensors"
META = "model.json"


def save_model(est, path, *, training_rows=True):
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    network, described_network = encode.to_arrays(est.autoencoder_)
    classifier, described_classifier = selflabel.to_arrays(getattr(est, "classifier_", None))
    umap_arrays, umap_settings = embed.to_arrays(est.embedding_, training_rows)
    arrays = {**umap_arrays, **cluster.to_arrays(cluster.Clusters(est.labels_, est.cluster_centers_, est.mixture_))}
    if est.scaler_.offset is not None:
        arrays.update({"scaler.offset": est.scaler_.offset, "scaler.span": est.scaler_.span})
    tensors = {**network, **classifier, **{k: torch.as_tensor(v).contiguous() for k, v in arrays.items()}}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "encluster_version": __version__,
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in est.get_params().items()},
        "method": est.method_,
        "autoencoder": described_network,
        "training": est.training_.to_dict(),
        "umap": umap_settings,
        "cluster_selection": est.cluster_selection_,
        "layout_agreement": est.layout_agreement_,
        "refinement_history": [float(h) for h in est.refinement_history_],
        "classifier": described_classifier,
        "selflabel": getattr(est, "selflabel_", None),
        "image_shape": None if getattr(est, "image_shape_", None) is None else list(est.image_shape_),
        "scaler": est.scaler_.mode,
        "n_features_in": int(est.n_features_in_),
        "n_clusters": int(est.cluster_centers_.shape[0]),
        "seed": int(est.seed_),
        "history": [float(h) for h in est.history_],
        "environment": environment(est.training_.precision),
        "feature_names_in": None if getattr(est, "feature_names_in_", None) is None
        else [str(n) for n in est.feature_names_in_],
    }
    digest = {}

    def write_weights(tmp):
        # The weights file carries a copy of the description, and the description the weights'
        # sha256: editing either file alone is detected when loading.
        save_file(tensors, tmp, metadata={"encluster": json.dumps(meta, sort_keys=True)})
        digest["sha256"] = hashlib.sha256(tmp.read_bytes()).hexdigest()

    atomic_write(path / WEIGHTS, write_weights)
    meta["weights_sha256"] = digest["sha256"]
    atomic_write_json(path / META, meta)


def _read_meta(path):
    meta_path = path / META
    if not path.is_dir():
        raise ModelError(f"{path}: not a model folder; give the run directory (or the folder passed to save())")
    for name in (META, WEIGHTS):
        if not (path / name).is_file():
            raise ModelError(f"{path}: {name} is missing; the model folder is incomplete, re-run or re-save it")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{meta_path}: not valid JSON ({exc}); the file is corrupted") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{meta_path}: not an encluster model description")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{meta_path}: model format version {meta.get('format_version')!r} (written by encluster "
                         f"{meta.get('encluster_version')}); this encluster {__version__} reads version "
                         f"{FORMAT_VERSION}: use a matching encluster or retrain")
    return meta


def load_model(cls, path):
    path = Path(path)
    meta = _read_meta(path)
    weights_path = path / WEIGHTS
    digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    if digest != meta.get("weights_sha256"):
        raise ModelError(f"{weights_path}: sha256 {digest} does not match model.json; the weights were altered "
                         "or belong to another model")
    try:
        tensors = load_file(weights_path)
        with safe_open(weights_path, framework="pt") as handle:
            recorded = (handle.metadata() or {}).get("encluster")
    except Exception as exc:  # SafetensorError and friends, for a damaged file
        raise ModelError(f"{weights_path}: not a valid safetensors file ({type(exc).__name__})") from None
    # A checksum proves only that the two files agree, not that the numbers are usable.
    broken = next((name for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()), None)
    if broken is not None:
        raise ModelError(f"{weights_path}: {broken} holds NaN or infinite values; the model is damaged, retrain it")
    described = {k: v for k, v in meta.items() if k != "weights_sha256"}
    if recorded != json.dumps(described, sort_keys=True):
        raise ModelError(f"{path / META}: does not match the description stored in {WEIGHTS}; model.json was "
                         "edited or belongs to another model")
    try:
        spec = None if meta["autoencoder"] is None else AutoencoderSpec(**meta["autoencoder"])
        method, umap_settings, selection = meta["method"], meta["umap"], meta["cluster_selection"]
        refinement_history = [float(h) for h in meta["refinement_history"]]
        training = TrainingConfig(**meta["training"])
        est = cls(**meta["params"])
        est.resolved_params()  # every setting checked as fit checks it: a forged device or range is refused here
        scaler_mode = meta["scaler"]
        n_features, n_clusters = int(meta["n_features_in"]), int(meta["n_clusters"])
        seed, history = int(meta["seed"]), [float(h) for h in meta["history"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # ConfigError is a ValueError
        raise ModelError(f"{path / META}: missing or invalid entry ({type(exc).__name__}: {exc}); "
                         "the file is corrupted") from None
    code_size = n_features if spec is None else spec.code_size
    if scaler_mode not in MODES or (spec is not None and spec.n_features != n_features) or (
            (spec is None) != (method == "umap")):
        raise ModelError(f"{path / META}: inconsistent description (method {method!r}, scaler {scaler_mode!r}, "
                         f"{n_features} features)")
    model = encode.from_arrays(tensors, meta["autoencoder"], weights_path)
    # Models saved before self-labelling have no classifier, and predict as they always did.
    classifier = selflabel.from_arrays(tensors, meta.get("classifier"), n_features, n_clusters, weights_path)
    image_shape = meta.get("image_shape")
    if image_shape is not None and (not isinstance(image_shape, list) or int(np.prod(image_shape)) != n_features):
        raise ModelError(f"{path / META}: image_shape {image_shape!r} does not hold {n_features} features")
    arrays = {k: v.numpy() for k, v in tensors.items() if not k.startswith(("autoencoder.", "classifier."))}
    embedding = embed.from_arrays(arrays, umap_settings, code_size, weights_path)
    found = cluster.from_arrays(arrays, n_clusters, code_size,
                                None if embedding is None else embedding.n_components, weights_path)
    scaler = _scaler(scaler_mode, arrays, n_features, weights_path)
    est.autoencoder_, est.method_, est.embedding_, est.mixture_ = model, method, embedding, found.mixture
    est.n_clusters_, est.cluster_selection_, est.refinement_history_ = n_clusters, selection, refinement_history
    est.cluster_centers_ = found.centers
    est.classifier_, est.selflabel_ = classifier, meta.get("selflabel")
    est.layout_agreement_ = meta.get("layout_agreement")  # absent from models saved before it was recorded
    est.image_shape_ = None if image_shape is None else tuple(int(s) for s in image_shape)
    est.scaler_ = scaler
    est.training_ = training
    est.n_features_in_ = n_features
    est.seed_ = seed
    est.history_ = history
    names = meta.get("feature_names_in")  # absent from models saved before data frames were taken
    if names is not None:
        if not isinstance(names, list) or len(names) != n_features or not all(isinstance(n, str) for n in names):
            raise ModelError(f"{path / META}: feature_names_in does not name the {n_features} features")
        est.feature_names_in_ = np.asarray(names, dtype=object)
    return est


def _scaler(mode, arrays, n_features, weights_path):
    """The saved `Scaler`; earlier models kept a min-max scaler's minimum and maximum instead."""
    if mode in ("uint8", "identity"):
        return Scaler(mode)
    offset, span = arrays.get("scaler.offset"), arrays.get("scaler.span")
    if offset is None and mode == "minmax" and "scaler.data_min" in arrays and "scaler.data_max" in arrays:
        offset, high = arrays["scaler.data_min"], arrays["scaler.data_max"]
        span = np.where(high > offset, high - offset, 1.0) if high.shape == offset.shape else high
    if offset is None or span is None or offset.shape != (n_features,) or span.shape != (n_features,) \
            or not np.all(span > 0):
        raise ModelError(f"{weights_path}: the {mode} scaler's offset and span are missing, not of {n_features} "
                         "features, or not positive")
    return Scaler(mode, offset.astype(np.float64), span.astype(np.float64))
