"""`EncodingClusterer`: train an autoencoder, cluster its codes, decode the centroids.

A thin face over the stages (`encluster.stages`): its parameters are the settings declared
there, each left at None taking the preset's value."""

import dataclasses
import functools
import inspect
import logging
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin

from .distributed import current
from . import confidence
from .errors import ConfigError, DataError, ModelError, NotFittedError, TrainingDiverged
from .fitted import Inputs, keep
from .params import take
from .persistence import load_model, save_model
from .memory import measured
from .scaling import ScaledRows, Scaler, row_range, summarise
from .stages import BY_NAME, METHODS, SETTINGS, cluster, embed, encode, get_preset, refine, resolve_method, selflabel
from .validation import check_members_per_cluster, check_n_clusters, check_samples

log = logging.getLogger(__name__)


def _signature():
    """``(self, n_clusters=10, *, preset=..., method=None, ...)``: every declared setting, a preset's
    one defaulting to None ("the preset's")."""
    first = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
             inspect.Parameter("n_clusters", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                               default=BY_NAME["n_clusters"].default)]
    rest = [inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=None if s.preset else s.default)
            for s in SETTINGS if s.name != "n_clusters"]
    return inspect.Signature(first + rest)


_SIGNATURE = _signature()


def _parameters_doc():
    """The numpydoc Parameters section, from the declarations."""
    lines = ["    Parameters", "    ----------"]
    for name, parameter in list(_SIGNATURE.parameters.items())[1:]:
        setting = BY_NAME[name]
        default = "None (the preset's)" if setting.preset else repr(parameter.default)
        lines += [f"    {name} : {setting.allowed.describe()}, default={default}", f"        {setting.help}."]
    return "\n".join(lines)


class EncodingClusterer(ClusterMixin, TransformerMixin, BaseEstimator):
    """Cluster data by the encoding a dense autoencoder learns of it.

    The autoencoder compresses each sample into a short code; the codes are clustered;
    the decoder turns each cluster centre back into a sample a person can look at. How
    the codes are clustered is the `method`:

    - ``"kmeans"``: k-means on the codes (the original experiment, preset ``original``).
    - ``"n2d"``: UMAP of the codes, then a Gaussian mixture (McConville et al. 2020,
      "N2D: (Not Too) Deep Clustering via Clustering the Local Manifold of an
      Autoencoded Embedding", ICPR; see `encluster.stages.embed`).
    - ``"dec"`` / ``"idec"``: k-means on the codes, then encoder and centres refined
      together (Xie et al. 2016; Guo et al. 2017; see `encluster.stages.refine`).
    - ``"umap"``: no network at all: UMAP of the scaled input, then a Gaussian mixture,
      the honest baseline a deep method has to beat.
    - ``"auto"`` (the default preset's): n2d for images and other data of 64 features or
      more, umap for narrower tables, where the network did not help (docs/benchmarks.md).

    After any method, ``selflabel`` can relabel every sample with a classifier trained on
    the clusters' surest members, with augmentation (a CNN for images; see
    `encluster.stages.selflabel`); the default preset does so for images.

{parameters}

    Attributes
    ----------
    method_ : str
        The method that ran ("auto" resolved).
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample (after self-labelling, the classifier's).
    n_clusters_ : int
        Number of clusters used (chosen, when `n_clusters="auto"`).
    cluster_selection_ : dict or None
        With "auto": the silhouette of each candidate number of clusters and the one chosen.
    cluster_centers_ : ndarray of shape (n_clusters_, code_size)
        Centres in code space (for n2d/umap: the mean code of each cluster's members);
        `decode(cluster_centers_)` shows them as samples.
    autoencoder_ : Autoencoder or None
        The trained network (None for method "umap").
    embedding_ : UmapEmbedding or None
        The UMAP of the codes (methods n2d and umap).
    mixture_ : sklearn.mixture.GaussianMixture or None
        The mixture fitted on the UMAP embedding (methods n2d and umap).
    embedded_ : ndarray of shape (n_samples, n_components) or None
        Where UMAP put each training sample (methods n2d and umap).
    layout_agreement_ : dict or None
        Where UMAP was laid out more than once (`umap_layouts`): how many times, which layout was
        kept, and each one's clusters' mean agreement (ARI) with the others'.
    history_ : list of float
        Mean reconstruction loss of each pretraining epoch.
    refinement_history_ : list of float
        DEC/IDEC: fraction of assignments that changed at each target update.
    classifier_ : Classifier or None
        The self-labelling classifier (None where `selflabel` is off); `predict` uses it.
    selflabel_ : dict or None
        What self-labelling did: how many sure members taught the classifier, its steps,
        augmentation and loss, how many samples it moved and between which clusters.
    clustered_labels_ : ndarray of shape (n_samples,)
        The clusters before self-labelling (the clustering's and DEC/IDEC's); not saved.
    image_shape_ : tuple or None
        The shape of one sample, where the samples are images.
    scaler_ : Scaler
        How raw inputs were scaled (onto [0, 1] or by z-score); applied again by `predict`/`transform`.
    n_features_in_ : int
        Width of the training data.
    seed_ : int
        The seed actually used.
    codes_ : ndarray of shape (n_samples, code_size)
        Codes of the training samples.
    timings_ : dict
        Seconds spent in each stage of `fit`.
    peak_memory_mb_ : dict
        The process's peak resident memory by the end of each stage of `fit`, in MB.
    world_size_ : int
        How many processes fitted the model together (1, unless run under torchrun).

    Notes
    -----
    Under ``torchrun`` (a started `torch.distributed` process group), every process calls
    `fit` on the same data: training and DEC/IDEC refinement run data-parallel, encoding and
    k-means are split into shards, and the steps that do not distribute (UMAP's fit, the
    Gaussian mixture, choosing k) run on rank 0 and are shared; every process ends with the
    same fitted model. `batch_size` is then the global batch (see `encluster.distributed`).
    """

    def __init__(self, *args, **kwargs):
        # Only stores the parameters, as scikit-learn requires; the signature is the declared settings'.
        bound = _SIGNATURE.bind(self, *args, **kwargs)
        bound.apply_defaults()
        for name, value in list(bound.arguments.items())[1:]:
            setattr(self, name, value)

    __init__.__signature__ = _SIGNATURE

    def resolved_params(self):
        """Every setting's value as `fit` uses it: the preset's, with this estimator's explicit settings on top,
        each checked (`get_params` gives only what was set, None standing for the preset's)."""
        values = get_preset(self.preset)
        for setting in SETTINGS:
            value = getattr(self, setting.name)
            if not setting.preset or value is not None:
                values[setting.name] = setting.check(value)
        return values

    def fit(self, X, y=None, *, image_shape=None, feature_names=None, checkpoint=None):
        """Train the autoencoder on `X`, then cluster the codes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images (n_samples, height, width[, channels])
            Raw samples, scaled as the `scaling` setting says (see `encluster.scaling.Scaler`).
            Images are flattened, and their shape kept for the self-labelling CNN.
        y : ignored
        image_shape : tuple, optional
            ``(height, width)`` or ``(height, width, channels)`` when the rows of a 2-D `X` are
            flattened images (channels last).
        feature_names : list of str, optional
            The names of the columns of an array read from a named table (a CSV header, a Parquet
            schema); a data frame's own names are taken from it. Kept as `feature_names_in_`, so
            that `predict` takes a table's columns by name.
        checkpoint : encluster.training.Checkpoint, optional
            Keep training state in files so an interrupted fit can resume exactly.
        """
        # Parameter checks first, then the data-dependent ones (as scikit-learn orders them).
        values = self.resolved_params()
        device = _check_device(values["device"])
        encoding, embedding = take(encode.EncodeSettings, values), take(embed.EmbedSettings, values)
        clustering, refinement = take(cluster.ClusterSettings, values), take(refine.RefineSettings, values)
        names = _names(X, feature_names)
        X, image_shape = _flattened(_numeric_columns(X), image_shape)
        X = check_samples(X, finite=False)
        if names is not None and len(names) != X.shape[1]:
            raise DataError(f"feature_names has {len(names)} names for {X.shape[1]} features; name every column once")
        summary = summarise(X)  # the one pass over the data before training
        image_shape = _check_image_shape(image_shape, X.shape[1])
        method = resolve_method(values["method"], X.shape[1])
        pipeline = METHODS[method]
        training = encode.training_config(encoding, device, len(X))
        group = current()
        k = clustering.n_clusters
        if k != "auto":
            check_n_clusters(k, len(X))
            check_members_per_cluster(k, len(X))
        spec = encode.network_spec(encoding, X.shape[1], encode.code_width(encoding, k)) if pipeline.encoder else None
        if spec is not None:
            encode.check_fits_in_memory(spec)
        if pipeline.embedding:
            embed.check_data(len(X), method)
        if (k == "auto" or k > 1) and len(X) > 1 and summary.constant:
            raise DataError(f"X is constant: all {len(X)} samples are identical, so there is nothing to cluster; "
                            "check the data")
        self.method_, self.training_ = method, training
        self.refinement_ = refine.config(refinement, pipeline.refinement) if pipeline.refinement else None
        per_cluster = cluster.expected_size(len(X), clustering)
        n_neighbors = embed.neighbours_for(embedding, per_cluster)
        self.selflabeling_ = selflabel.config(take(selflabel.SelfLabelSettings, values), image_shape, X.shape[1],
                                              training.precision, n_neighbors, per_cluster)
        self.world_size_ = group.world_size
        seed = int(self.random_state if self.random_state is not None else np.random.default_rng().integers(2**31 - 1))
        keep(self, Inputs(X.shape[1], image_shape, names, Scaler.fit(X, _scaling_for(encoding, pipeline), summary),
                          seed))
        data = ScaledRows(X, self.scaler_)
        self.timings_, self.peak_memory_mb_ = {}, {}
        measure = functools.partial(measured, seconds=self.timings_, peaks=self.peak_memory_mb_)

        with measure("train"):
            network, history = None, []
            if spec is not None:
                network, history = encode.fit(data, spec, training, seed=self.seed_, device=device,
                                              verbose=self.verbose, checkpoint=checkpoint, group=group)
            keep(self, encode.Network(network, history, training))
        with measure("encode"):
            self.codes_ = self._encode_shards(data, group, device)

        count = embed.layouts_for(len(X), embedding) if pipeline.embedding else 1
        spaces = {"encoding": self.codes_}
        if embed.choose_space(embedding, method, len(X), count):
            spaces["input"] = encode.encode(None, data)  # the scaled input, clustered as method "umap" would
        candidates = {}
        for space, points in spaces.items():
            layouts = [(None, None)]  # each (embedding, embedded); None: cluster the points themselves
            if pipeline.embedding:
                with measure("embed"):
                    layouts = [embed.fit(points, embed.width_for(k), embedding, n_neighbors=n_neighbors,
                                         seed=self.seed_ + i, group=group) for i in range(count)]
            with measure("cluster"):
                kept, found, agreement, labelings = cluster.fit_most_agreeing(
                    [embedded for _, embedded in layouts], points, clustering, pipeline.clustering, seed=self.seed_,
                    group=group)
            candidates[space] = (*layouts[kept], agreement, found, labelings)
            layouts = None
        chosen, choice = cluster.most_stable({space: c[2] for space, c in candidates.items()})
        kept_embedding, embedded, agreement, found, labelings = candidates[chosen]
        candidate_labels = {space: c[3].labels for space, c in candidates.items()} if len(spaces) > 1 else None
        candidates = None
        if chosen == "input":
            log.info("clustering the input, not its encoding: its UMAP layouts agree more across seeds (mean ARI "
                     "%.3f against %.3f)", choice["agreement"]["input"], choice["agreement"]["encoding"])
            self.method_, self.codes_ = "umap", spaces["input"]
            keep(self, encode.Network(None, [], training))
        spaces = None
        with measure("cluster"):
            keep(self, embed.Layout(kept_embedding, agreement, choice, embedded, labelings, candidate_labels))
            keep(self, found)
            keep(self, refine.Refinement([]))
            if self.refinement_ is not None:
                labels, centers, history = refine.fit(
                    self.autoencoder_, data, self.cluster_centers_, self.refinement_, loss=training.loss,
                    seed=self.seed_, device=device, verbose=self.verbose, checkpoint=checkpoint, group=group)
                keep(self, cluster.Clusters(labels, centers, selection=found.selection))
                keep(self, refine.Refinement(history))
                self.codes_ = self._encode_shards(data, group, device)
        keep(self, selflabel.Relabelling(None, None, self.labels_))
        if self.selflabeling_ is not None and self.n_clusters_ > 1:
            with measure("selflabel"):
                self._self_label(data, device, checkpoint, group)
        with measure("confidence"):
            self._fit_confidence(data, device, group, max(1, n_neighbors // 2), values["unsure"],
                                 values["unsure_below"])
        if names is None and hasattr(self, "feature_names_in_"):
            del self.feature_names_in_  # scikit-learn's convention: the attribute exists only where names were given
        return self

    def _self_label(self, data, device, checkpoint, group):
        """Train the classifier on the surest members and relabel every sample with it."""
        members = group.on_main(lambda: {"members": selflabel.sure_members_of(
            self.embedding_, self.codes_, self.labels_, self.n_clusters_, self.selflabeling_.neighbors, self.seed_)})[
            "members"]
        steps = selflabel.steps_for(self.selflabeling_.steps, len(members), self.selflabeling_.passes)
        if steps < self.selflabeling_.steps:
            log.info("self-labelling: %d steps instead of %d, %d passes over the %d sure members", steps,
                     self.selflabeling_.steps, self.selflabeling_.passes, len(members))
        config = self.selflabeling_ = dataclasses.replace(self.selflabeling_, steps=steps)
        classifier, history = selflabel.fit(data, members, self.labels_[members], self.n_clusters_, config,
                                                  seed=self.seed_, device=device, verbose=self.verbose,
                                                  checkpoint=checkpoint, group=group)
        labels = selflabel.classify_shards(classifier, data, group, device)
        moved, pairs = selflabel.moves(self.labels_, labels, self.n_clusters_)
        log.info("self-labelling: %d sure members taught the classifier; it moved %d of %d samples", len(members),
                 moved, len(labels))
        keep(self, selflabel.Relabelling(classifier, selflabel.summary(config, members, len(labels), history, moved,
                                                                       pairs), self.labels_))
        for c in range(self.n_clusters_):  # the centres follow their members (one left empty keeps its own)
            if np.any(labels == c):
                self.cluster_centers_[c] = self.codes_[labels == c].mean(axis=0)
        self.labels_ = labels

    def _fit_confidence(self, data, device, group, n_neighbors, unsure, unsure_below):
        """Each training sample's confidence, its scores' temperature matched to the clustering's
        neighbour agreement (`encluster.confidence`), and the threshold below which a sample is unsure
        (`unsure`, a share, or `unsure_below`, a confidence)."""
        scores, source = self._scores(data, device, group=group)

        def agreement():  # the mean share of each sample's neighbours in its cluster (1 where it has none)
            graph, rows = selflabel.neighbour_graph(self.embedding_, self.codes_, n_neighbors, self.seed_)
            shares = selflabel.neighbour_agreement(graph, self.labels_, rows) if graph.shape[1] > 1 else np.ones(1)
            return {"agreement": np.array([shares.mean()])}

        keep(self, confidence.fitted(scores, float(group.on_main(agreement)["agreement"][0]), unsure, unsure_below,
                                     source))

    def _scores(self, data, device, *, group=None):
        """One score per cluster for each scaled row of `data` (`encluster.confidence`) and what gave them:
        the classifier's, else the mixture's at the rows' UMAP places, else the centres' kernel. With a
        `group`, `data` is the training data: the fitted codes and UMAP places are used."""
        if self.classifier_ is not None:
            if group is None:
                return selflabel.logits(self.classifier_, data, device), "classifier"
            shard = row_range(data, *group.shard(len(data)))
            return group.all_gather_rows(selflabel.logits(self.classifier_, shard, device, row_exact=False)), \
                "classifier"
        codes = self.codes_ if group is not None else encode.encode(self.autoencoder_, data, row_exact=True,
                                                                     device=device)
        if self.mixture_ is not None:
            space = self.embedded_ if group is not None else embed.apply(self.embedding_, codes)
            return confidence.mixture_scores(self.mixture_, space), "mixture"
        return confidence.kernel_scores(codes, self.cluster_centers_), "centres"

    def _marked(self, labels, confidences):
        """`labels` with the samples below the unsure threshold marked -1 (where `unsure` was asked for)."""
        threshold = getattr(self, "unsure_threshold_", None)
        return labels if threshold is None else np.where(confidences < threshold, -1, labels)

    def _check_fitted(self):
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError("this EncodingClusterer is not fitted yet; call fit(X) or load a saved model first")

    def _check_width(self, X, feature_names=None):
        names = _names(X, feature_names)
        X = self._in_fitted_order(_numeric_columns(X), names)
        fitted_shape = getattr(self, "image_shape_", None)
        if isinstance(X, np.ndarray) and X.ndim > 2 and fitted_shape is not None:
            if _squeezed(X.shape[1:]) != _squeezed(fitted_shape):
                raise DataError(f"X holds images of shape {X.shape[1:]}, but the model was fitted on images of shape "
                                f"{tuple(fitted_shape)}; resize them to the training images' shape")
            X, _ = _flattened(X, None)
        X = check_samples(X)
        if X.shape[1] != self.n_features_in_:
            raise DataError(f"X has {X.shape[1]} features, but EncodingClusterer is expecting {self.n_features_in_} "
                            "features as input (the training data's width); give data of the same width and layout")
        return X

    def _in_fitted_order(self, X, names):
        """Columns by name: the columns of a named `X` put in the order fit saw them; missing, extra
        or renamed ones refused in one line. Without names on one side, scikit-learn's warning."""
        fitted = getattr(self, "feature_names_in_", None)
        if names is None and fitted is not None:
            warnings.warn("X does not have valid feature names, but EncodingClusterer was fitted with feature names",
                          UserWarning, stacklevel=4)
        elif names is not None and fitted is None:
            warnings.warn("X has feature names, but EncodingClusterer was fitted without feature names", UserWarning,
                          stacklevel=4)
        elif names is not None and list(names) != list(fitted):
            missing = [n for n in fitted if n not in set(names)]
            unexpected = [n for n in names if n not in set(fitted)]
            repeated = sorted({n for n in names if list(names).count(n) > 1})
            if missing or unexpected or repeated:
                detail = "; ".join(f"{what} {found}" for what, found in (
                    ("missing", missing), ("unexpected", unexpected), ("repeated", repeated)) if found)
                raise DataError(f"the columns do not match those the model was fitted on: {detail}; give the "
                                f"training data's columns: {list(fitted)}")
            order = [list(names).index(n) for n in fitted]
            return np.asarray(X)[:, order]
        return X

    def _encode_shards(self, data, group, device):
        """Codes of all of `data`: each process encodes its shard, and the shards are gathered in order."""
        codes = group.all_gather_rows(encode.encode(self.autoencoder_, row_range(data, *group.shard(len(data))),
                                                    row_exact=True, device=device))
        if self.autoencoder_ is not None and not np.isfinite(codes).all():
            raise TrainingDiverged("the training diverged: the network's codes are NaN or infinite; lower "
                                   "learning_rate (--learning-rate), or refine_learning_rate for dec and idec")
        return codes

    def _device_here(self):
        """Where `transform` and `predict` compute: the model's `device`, or the CPU on a machine
        without it (a model trained on a GPU, loaded elsewhere)."""
        device = torch.device(self.device)
        return device if device.type != "cuda" or torch.cuda.is_available() else torch.device("cpu")

    def transform(self, X, *, feature_names=None):
        """The codes of `X`, shape (n_samples, code_size) (the scaled input for method "umap").

        A model fitted with column names takes a named `X` (a data frame, or an array with its
        `feature_names`) by name, whatever the columns' order."""
        self._check_fitted()
        return encode.encode(self.autoencoder_, ScaledRows(self._check_width(X, feature_names), self.scaler_),
                             row_exact=True, device=self._device_here())

    def predict(self, X, *, feature_names=None):
        """The cluster of each sample in `X`: the self-labelling classifier's, where there is one;
        else the mixture component of its UMAP position (n2d, umap), else the nearest centre to
        its code; -1 for a sample less sure than the `unsure` share of the training samples were
        (where it was asked for). Columns are taken by name as in `transform`."""
        if getattr(self, "classifier_", None) is not None:
            self._check_fitted()
            labels = selflabel.classify(self.classifier_, ScaledRows(self._check_width(X, feature_names),
                                                                     self.scaler_), self._device_here())
        else:
            codes = self.transform(X, feature_names=feature_names)
            space = embed.apply(self.embedding_, codes) if self.embedding_ is not None else codes
            labels = cluster.predict(self.cluster_centers_, self.mixture_, space, codes)
        if getattr(self, "unsure_threshold_", None) is None:
            return labels
        return self._marked(labels, self.predict_proba(X, feature_names=feature_names).max(axis=1))

    def predict_proba(self, X, *, feature_names=None):
        """The probability of each cluster for each sample in `X`, shape (n_samples, n_clusters_),
        rows summing to 1, clusters in order; its largest is the sample's confidence, and lies on the
        cluster `predict` gives. What it is computed from, and how it is calibrated without labels:
        `encluster.confidence`."""
        self._check_fitted()
        if getattr(self, "confidence_temperature_", None) is None:
            raise ModelError("this model was saved before encluster computed confidences; refit it to get "
                             "predict_proba")
        rows = ScaledRows(self._check_width(X, feature_names), self.scaler_)
        scores, _ = self._scores(rows, self._device_here())
        return confidence.probabilities(scores, self.confidence_temperature_)

    def fit_predict(self, X, y=None):
        """Fit and return `labels_`, with the least sure samples marked -1 where `unsure` asks for it."""
        self.fit(X)
        return self._marked(self.labels_, self.confidence_)

    def decode(self, codes):
        """Decode codes (e.g. `cluster_centers_`) into samples, in the model's [0, 1] scale."""
        self._check_fitted()
        codes = check_samples(codes, name="codes")
        width = self.cluster_centers_.shape[1]
        if codes.shape[1] != width:
            raise DataError(f"codes have width {codes.shape[1]}; this model's code size is {width}")
        return encode.decode(self.autoencoder_, codes)

    def save(self, path, *, training_rows=True):
        """Write the fitted model to the folder `path` (model.safetensors + model.json), without pickle.

        What the file holds besides the network and the clusters: for the methods that embed with
        UMAP (n2d, umap, the default), the rows UMAP was fitted on (up to 100,000), because placing
        a new point needs its nearest training points. For n2d and the default these are the
        training samples' codes, which the decoder turns back into approximate samples; for
        ``umap`` they are the scaled training samples themselves. Whoever receives the file
        receives them. ``training_rows=False`` leaves them out: the loaded model keeps its labels,
        centres, `transform` and `decode`, but `predict` is refused with a message saying why.
        """
        self._check_fitted()
        save_model(self, path, training_rows=training_rows)

    @classmethod
    def load(cls, path):
        """Load a model written by `save`; refuses tampered or incompatible files."""
        return load_model(cls, path)


EncodingClusterer.__doc__ = EncodingClusterer.__doc__.replace("{parameters}", _parameters_doc())


def _column_names(X):
    """A data frame's column names when every one is a string (scikit-learn's rule), else None."""
    columns = getattr(X, "columns", None)
    if columns is None or not all(isinstance(c, str) for c in columns):
        return None
    return np.asarray(list(columns), dtype=object)


def _names(X, feature_names):
    """The names of `X`'s columns: a data frame's own, else `feature_names` (an array read from a named
    table), else None."""
    names = _column_names(X)
    if names is None and feature_names is not None:
        if not all(isinstance(n, str) for n in feature_names):
            raise DataError("feature_names must be strings, one per column")
        names = np.asarray(list(feature_names), dtype=object)
    return names


def _squeezed(shape):
    """An image shape with a single channel written as none: (h, w, 1) and (h, w) are one shape."""
    shape = tuple(int(s) for s in shape)
    return shape[:2] if len(shape) == 3 and shape[2] == 1 else shape


def _numeric_columns(X):
    """A data frame as an array, after naming the first column that holds anything but numbers."""
    dtypes = getattr(X, "dtypes", None)
    if dtypes is None or not hasattr(X, "columns"):
        return X
    for column, dtype in zip(X.columns, dtypes):
        if getattr(dtype, "kind", "O") not in "biuf":
            raise DataError(f"column {column!r} holds {dtype}, not numbers; drop it, or encode it as numbers "
                            "(for categories, e.g. pandas.get_dummies)")
    return X.to_numpy()


def _flattened(X, image_shape):
    """A stack of images (n, height, width[, channels]) as rows, with its image shape; other data as it is."""
    if isinstance(X, np.ndarray) and X.ndim in (3, 4):
        if image_shape is not None and tuple(image_shape) != X.shape[1:]:
            raise DataError(f"X holds images of shape {X.shape[1:]} but image_shape={tuple(image_shape)}; give one "
                            "of them, or the same shape in both")
        return X.reshape(len(X), -1), X.shape[1:]
    return X, image_shape


def _check_image_shape(image_shape, n_features):
    """`image_shape` as a tuple, checked against the rows' width."""
    if image_shape is None:
        return None
    shape = tuple(int(s) for s in image_shape)
    if len(shape) not in (2, 3) or min(shape) < 1 or int(np.prod(shape)) != n_features:
        raise DataError(f"image_shape={shape} does not describe rows of {n_features} values; give (height, width) "
                        "or (height, width, channels), channels last, whose product is the number of features")
    return shape


def _scaling_for(encoding, pipeline):
    """The scaling to fit: binary cross-entropy compares with targets on [0, 1], so a network trained
    with it takes "auto" as "minmax" and refuses "standard"."""
    if not (pipeline.encoder and encoding.loss == "bce"):
        return encoding.scaling
    if encoding.scaling == "standard":
        raise ConfigError("scaling='standard' gives values outside [0, 1], which loss='bce' cannot reconstruct; "
                          "use scaling='minmax' or loss='mse'")
    return "minmax"


def _check_device(name):
    """The torch device `name` names, refused with a hint when it is absent here."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but no CUDA GPU is available; use device='cpu'")
    return device
