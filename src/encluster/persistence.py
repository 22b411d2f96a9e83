"""Saving and loading a fitted `EncodingClusterer` without pickle.

A model is a folder with two files: ``model.safetensors`` (every array: network
weights, cluster centres, scaler range) and ``model.json`` (architecture, settings,
version, and the sha256 of the weights file). Loading parses JSON and safetensors
only, so a shared model cannot run code; the checksum and shape checks refuse a file
that was altered or belongs to another model.
"""

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from . import __version__
from .errors import ModelError
from .clustering import mixture_from_arrays, mixture_to_arrays
from .embedding import UmapEmbedding
from .models import Autoencoder, AutoencoderSpec, parameter_shapes
from .scaling import MODES, Scaler
from .training import TrainingConfig

FORMAT = "encluster-model"
FORMAT_VERSION = 2
WEIGHTS = "model.safetensors"
META = "model.json"


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data):
    """Write `data` to `path` so that a reader never sees a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would surprise whoever shares the run
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path, obj):
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def save_model(est, path):
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    network = est.autoencoder_
    tensors = {} if network is None else {f"autoencoder.{k}": v.detach().cpu().contiguous()
                                          for k, v in network.state_dict().items()}
    umap_settings = None
    if est.embedding_ is not None:
        arrays, umap_settings = est.embedding_.to_arrays()
        tensors.update({f"umap.{k}": torch.as_tensor(v) for k, v in arrays.items()})
        tensors.update({f"mixture.{k}": torch.as_tensor(v) for k, v in mixture_to_arrays(est.mixture_).items()})
    tensors["cluster_centers"] = torch.as_tensor(est.cluster_centers_).contiguous()
    if est.scaler_.mode == "minmax":
        tensors["scaler.data_min"] = torch.as_tensor(est.scaler_.data_min)
        tensors["scaler.data_max"] = torch.as_tensor(est.scaler_.data_max)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "encluster_version": __version__,
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in est.get_params().items()},
        "method": est.method_,
        "autoencoder": None if network is None else network.spec.to_dict(),
        "training": est.training_.to_dict(),
        "umap": umap_settings,
        "cluster_selection": est.cluster_selection_,
        "refinement_history": [float(h) for h in est.refinement_history_],
        "scaler": est.scaler_.mode,
        "n_features_in": int(est.n_features_in_),
        "n_clusters": int(est.cluster_centers_.shape[0]),
        "seed": int(est.seed_),
        "history": [float(h) for h in est.history_],
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{WEIGHTS}.", suffix=".partial", dir=path)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    try:
        # The weights file carries a copy of the description, and the description the weights'
        # sha256: editing either file alone is detected when loading.
        save_file(tensors, tmp, metadata={"encluster": json.dumps(meta, sort_keys=True)})
        digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
        os.replace(tmp, path / WEIGHTS)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    meta["weights_sha256"] = digest
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
        scaler_mode = meta["scaler"]
        n_features, n_clusters = int(meta["n_features_in"]), int(meta["n_clusters"])
        seed, history = int(meta["seed"]), [float(h) for h in meta["history"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelError(f"{path / META}: missing or invalid entry ({type(exc).__name__}: {exc}); "
                         "the file is corrupted") from None
    code_size = n_features if spec is None else spec.code_size
    if scaler_mode not in MODES or (spec is not None and spec.n_features != n_features) or (
            (spec is None) != (method == "umap")):
        raise ModelError(f"{path / META}: inconsistent description (method {method!r}, scaler {scaler_mode!r}, "
                         f"{n_features} features)")
    state = {k[len("autoencoder."):]: v for k, v in tensors.items() if k.startswith("autoencoder.")}
    # Compare shapes before building the network: a tampered model.json claiming huge
    # layers must not make us allocate them.
    expected = {} if spec is None else parameter_shapes(spec)
    if set(state) != set(expected) or any(tuple(state[k].shape) != expected[k] for k in expected):
        raise ModelError(f"{weights_path}: weight names or shapes do not match the architecture in model.json")
    centers = tensors.get("cluster_centers")
    if centers is None or tuple(centers.shape) != (n_clusters, code_size):
        raise ModelError(f"{weights_path}: cluster centres missing or not of shape ({n_clusters}, {code_size})")
    embedding, mixture = _load_embedding(tensors, umap_settings, code_size, n_clusters, weights_path)
    if scaler_mode == "minmax":
        low, high = tensors.get("scaler.data_min"), tensors.get("scaler.data_max")
        if low is None or high is None or tuple(low.shape) != (n_features,) or tuple(high.shape) != (n_features,):
            raise ModelError(f"{weights_path}: the min-max scaler's range is missing or not of {n_features} features")
        scaler = Scaler("minmax", low.numpy(), high.numpy())
    else:
        scaler = Scaler(scaler_mode)
    model = None
    if spec is not None:
        model = Autoencoder(spec)
        model.load_state_dict(state)
        model.eval()
    est.autoencoder_, est.method_, est.embedding_, est.mixture_ = model, method, embedding, mixture
    est.n_clusters_, est.cluster_selection_, est.refinement_history_ = n_clusters, selection, refinement_history
    est.cluster_centers_ = centers.numpy().astype(np.float32)
    est.scaler_ = scaler
    est.training_ = training
    est.n_features_in_ = n_features
    est.seed_ = seed
    est.history_ = history
    return est


def _load_embedding(tensors, settings, code_size, n_clusters, weights_path):
    """The UMAP embedding and Gaussian mixture of an n2d/umap model, checked against each other."""
    if settings is None:
        return None, None
    try:
        fit_data, embedding = tensors["umap.fit_data"].numpy(), tensors["umap.embedding"].numpy()
        width = int(settings["n_components"])
        if fit_data.ndim != 2 or fit_data.shape[1] != code_size or embedding.shape != (len(fit_data), width):
            raise ValueError("UMAP arrays do not match the code size or each other")
        mixture = mixture_from_arrays({k: tensors[f"mixture.{k}"].numpy() for k in
                                       ("weights", "means", "covariances", "precisions_cholesky")})
        if mixture.means_.shape != (n_clusters, width):
            raise ValueError("the mixture does not match the embedding")
        return UmapEmbedding.from_arrays({"fit_data": fit_data, "embedding": embedding}, settings), mixture
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{weights_path}: the UMAP embedding or mixture is missing or inconsistent ({exc}); "
                         "the model is damaged, re-save it") from None
