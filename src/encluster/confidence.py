"""How sure each assignment is: a probability per cluster for every sample (`predict_proba`), whose
largest is the sample's confidence, and an "unsure" label (-1) for the least sure where asked.

The probabilities come from what the method has, one score per cluster whose largest is the cluster
`predict` gives:

- the self-labelling classifier's logits, where it ran;
- else the Gaussian mixture's weighted log-density of each component at the sample's UMAP place
  (n2d, umap and the default without self-labelling);
- else DEC's Student-t kernel on the distance from the code to each centre, ``-log(1 + d²)``
  (kmeans, dec, idec).

None of them is a probability one can read as it stands: the mixture's posteriors are above 0.99
for almost every sample, right or wrong. So the scores are divided by one temperature, chosen when
fitting so that the training samples' mean confidence equals their neighbour agreement (the share of
each sample's nearest neighbours in its cluster, averaged): an estimate of how often the clustering
is right that reads no labels. Dividing by a temperature keeps the order of the clusters, so the
most probable cluster is the one `predict` gives, and the order of the samples' confidences within
one source. A sample's scores are computed from it alone, so its confidence does not depend on what
it is batched with.
"""

from dataclasses import dataclass

import numpy as np

from .errors import ModelError
from .fitted import attribute, unsaved
from .params import Interval, Setting

SETTINGS = (
    Setting("unsure", Interval(float, 0, 1, closed="left"), "mark the least sure share of the training samples -1 "
            "(unsure) in assignments and fit_predict, and new samples below the confidence that share ended at in "
            "predict; 0 marks none", 0.0),
    Setting("unsure_below", Interval(float, 0, 1), "mark every sample whose confidence is below this -1 (unsure), "
            "in training and in predict; with unsure too, the higher of the two thresholds; 0 marks none", 0.0),
)
# The bisection on the temperature: its range (log10) and steps; the mean confidence is monotone in it.
LOG_TEMPERATURE_RANGE = (-8.0, 8.0)
BISECTION_STEPS = 60
HISTOGRAM_BINS = 10


def mixture_scores(mixture, space):
    """Each Gaussian component's weighted log-density at each row of `space` (scikit-learn's
    `GaussianMixture` with full covariances): the scores whose largest is `mixture.predict`."""
    space = np.asarray(space, dtype=np.float64)
    scores = np.empty((len(space), len(mixture.means_)))
    for k, (mean, cholesky) in enumerate(zip(mixture.means_, mixture.precisions_cholesky_)):
        y = (space - mean) @ cholesky
        scores[:, k] = np.log(np.diag(cholesky)).sum() - 0.5 * (y * y).sum(axis=1)
    return scores - 0.5 * space.shape[1] * np.log(2 * np.pi) + np.log(mixture.weights_)


def kernel_scores(codes, centers):
    """DEC's Student-t kernel (one degree of freedom) of each code to each centre, as a log:
    ``-log(1 + |code - centre|²)``, whose largest is the nearest centre."""
    codes, centers = np.asarray(codes, dtype=np.float64), np.asarray(centers, dtype=np.float64)
    distances = (codes**2).sum(1)[:, None] - 2 * codes @ centers.T + (centers**2).sum(1)[None, :]
    return -np.log1p(np.maximum(distances, 0.0))


def probabilities(scores, temperature):
    """The softmax of `scores` / `temperature`, one row per sample (each row sums to 1)."""
    tempered = np.asarray(scores, dtype=np.float64) / temperature
    tempered -= tempered.max(axis=1, keepdims=True)
    weights = np.exp(tempered)
    return weights / weights.sum(axis=1, keepdims=True)


def temperature_for(scores, target):
    """The temperature at which the mean largest probability of `scores` is `target` (bisection in
    log space; the ends of `LOG_TEMPERATURE_RANGE` where the target is out of reach)."""
    low, high = LOG_TEMPERATURE_RANGE
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        if probabilities(scores, 10**middle).max(axis=1).mean() > target:
            low = middle  # too sure: a higher temperature
        else:
            high = middle
    return float(10 ** ((low + high) / 2))


@dataclass
class Confidence:
    """The confidence's fitted state: what the scores come from, the temperature they are divided by,
    the neighbour agreement it was matched to, and the confidence below which a new sample is unsure
    (None unless `unsure` was asked for). Not saved: each training sample's confidence, and `summary`."""

    source: str | None = attribute("confidence_source_")
    temperature: float | None = attribute("confidence_temperature_")
    neighbour_agreement: float | None = attribute("neighbour_agreement_")
    unsure_threshold: float | None = attribute("unsure_threshold_")
    confidence: np.ndarray | None = unsaved("confidence_")
    summary: dict | None = unsaved("confidence_summary_")

    def to_arrays(self, training_rows=True):
        if self.temperature is None:  # a model loaded from before confidences, saved again
            return {}, {"confidence": None}
        return {}, {"confidence": {"source": self.source, "temperature": self.temperature,
                                   "neighbour_agreement": self.neighbour_agreement,
                                   "unsure_threshold": self.unsure_threshold}}

    @classmethod
    def from_arrays(cls, arrays, meta, shape):
        described = meta.get("confidence")  # absent from models saved before confidences
        if described is None:
            return cls(None, None, None, None)
        temperature, threshold = described["temperature"], described["unsure_threshold"]
        if not (np.isfinite(float(temperature)) and float(temperature) > 0) or (
                threshold is not None and not 0 <= float(threshold) <= 1):
            raise ModelError(f"{shape.where.parent / 'model.json'}: the confidence's temperature {temperature!r} or "
                             f"unsure threshold {threshold!r} is out of range; the model is damaged, re-save it")
        return cls(str(described["source"]), float(temperature), float(described["neighbour_agreement"]),
                   None if threshold is None else float(threshold))


def fitted(scores, agreement, unsure, unsure_below, source):
    """The `Confidence` of training samples whose `scores` are given, matched to their neighbour
    `agreement`; the threshold below which a sample is unsure: the confidence that the `unsure` share
    of them ends at, or `unsure_below`, the higher (None where both are 0)."""
    temperature = temperature_for(scores, agreement)
    probabilities_ = probabilities(scores, temperature)
    confidence = probabilities_.max(axis=1)
    asked = [float(np.quantile(confidence, unsure))] if unsure > 0 else []
    asked += [float(unsure_below)] if unsure_below > 0 else []
    threshold = max(asked) if asked else None
    return Confidence(source, temperature, agreement, threshold, confidence,
                      summary(confidence, probabilities_, threshold))


def summary(confidence, probabilities_, threshold):
    """What metrics.json keeps of the training samples' confidence: its histogram and mean, the
    unsure share, and the pairs of clusters the least sure tenth lie between (their two likeliest)."""
    histogram, _ = np.histogram(confidence, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    least = np.argsort(confidence, kind="stable")[: max(1, len(confidence) // 10)]
    if probabilities_.shape[1] > 1:
        two = np.sort(np.argsort(-probabilities_[least], axis=1, kind="stable")[:, :2], axis=1)
        pairs, counts = np.unique(two, axis=0, return_counts=True)
        order = np.argsort(-counts, kind="stable")[:5]
        between = [[int(pairs[i, 0]), int(pairs[i, 1]), int(counts[i])] for i in order]
    else:
        between = []
    unsure = None if threshold is None else float((confidence < threshold).mean())
    return {"mean": round(float(confidence.mean()), 4), "histogram": histogram.tolist(),
            "bins": np.linspace(0, 1, HISTOGRAM_BINS + 1).round(2).tolist(), "unsure_share": unsure,
            "unsure_threshold": threshold, "least_sure_between": between}
