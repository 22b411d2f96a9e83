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

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from . import __version__
from .atomic import atomic_write, atomic_write_json
from .confidence import Confidence
from .errors import ModelError
from .fitted import Inputs, Shape, gather, keep
from .models import AutoencoderSpec
from .provenance import environment
from .scaling import MODES
from .stages import cluster, embed, encode, refine, selflabel

FORMAT = "encluster-model"
FORMAT_VERSION = 2
WEIGHTS = "model.safetensors"
META = "model.json"


# The fitted state, part by part, in the order loading needs: each part is checked against the
# model's `Shape`, which only the description's top entries give.
PARTS = (Inputs, encode.Network, embed.Layout, cluster.Clusters, refine.Refinement, selflabel.Relabelling,
         Confidence)


def save_model(est, path, *, training_rows=True):
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "encluster_version": __version__,
            "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in est.get_params().items()},
            "method": est.method_, "environment": environment(est.training_.precision)}
    for kind in PARTS:
        arrays, described = gather(est, kind).to_arrays(training_rows)
        tensors.update({k: torch.as_tensor(v).contiguous() for k, v in arrays.items()})
        meta.update(described)
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
        est = cls(**meta["params"])
        est.resolved_params()  # every setting checked as fit checks it: a forged device or range is refused here
        method, shape = meta["method"], _shape(meta, weights_path)
        if meta["scaler"] not in MODES or ((meta["autoencoder"] is None) != (method == "umap")):
            raise ModelError(f"{path / META}: inconsistent description (method {method!r}, scaler "
                             f"{meta['scaler']!r}, {shape.n_features} features)")
        arrays = {name: t.numpy() for name, t in tensors.items()}
        parts = [kind.from_arrays(arrays, meta, shape) for kind in PARTS]
    except ModelError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # ConfigError is a ValueError
        raise ModelError(f"{path / META}: missing or invalid entry ({type(exc).__name__}: {exc}); "
                         "the file is corrupted") from None
    est.method_ = method
    for part in parts:
        keep(est, part, loaded=True)
    if est.feature_names_in_ is None:
        del est.feature_names_in_  # scikit-learn's convention: the attribute exists only where names were given
    return est


def _shape(meta, where):
    """The widths every part is checked against, from the description's top entries."""
    n_features, n_clusters = int(meta["n_features_in"]), int(meta["n_clusters"])
    network, umap = meta["autoencoder"], meta["umap"]
    spec = None if network is None else AutoencoderSpec(**network)
    if spec is not None and spec.n_features != n_features:
        raise ModelError(f"{where.parent / META}: inconsistent description (an autoencoder of {spec.n_features} "
                         f"features, {n_features} features)")
    return Shape(n_features, n_clusters, n_features if spec is None else spec.code_size,
                 None if umap is None else int(umap["n_components"]), where)
