import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from encluster.errors import DataError
from encluster.metrics import clustering_accuracy, hungarian_matching, mean_cluster_purity, purity, score


def brute_force_accuracy(y_true, y_pred):
    """Best accuracy over every injective map of clusters to classes."""
    clusters, classes = np.unique(y_pred), np.arange(max(y_true.max(), y_pred.max()) + 1)
    best = 0
    for perm in itertools.permutations(classes, len(clusters)):
        mapping = dict(zip(clusters, perm))
        best = max(best, np.mean([mapping[p] == t for p, t in zip(y_pred, y_true)]))
    return best


labelings = st.integers(1, 12).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 3), min_size=n, max_size=n), st.lists(st.integers(0, 3), min_size=n, max_size=n)))


@settings(max_examples=150, deadline=None)
@given(labelings)
def test_accuracy_matches_brute_force(pair):
    y_true, y_pred = map(np.array, pair)
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(brute_force_accuracy(y_true, y_pred))


@settings(max_examples=100, deadline=None)
@given(labelings)
def test_nmi_ari_match_scikit_learn(pair):
    y_true, y_pred = map(np.array, pair)
    s = score(y_true, y_pred)
    assert s["nmi"] == pytest.approx(normalized_mutual_info_score(y_true, y_pred))
    assert s["ari"] == pytest.approx(adjusted_rand_score(y_true, y_pred))


@settings(max_examples=100, deadline=None)
@given(labelings, st.permutations(range(4)))
def test_scores_ignore_cluster_names(pair, perm):
    y_true, y_pred = map(np.array, pair)
    renamed = np.array(perm)[y_pred]
    assert score(y_true, renamed) == pytest.approx(score(y_true, y_pred))


def test_purity_worked_by_hand():
    # cluster 0: classes [0,0,0,1] -> 3; cluster 1: [1,1] -> 2; cluster 2: [0] -> 1
    y_true = np.array([0, 0, 0, 1, 1, 1, 0])
    y_pred = np.array([0, 0, 0, 0, 1, 1, 2])
    assert purity(y_true, y_pred) == pytest.approx(6 / 7)
    assert mean_cluster_purity(y_true, y_pred) == pytest.approx((3 / 4 + 1 + 1) / 3)
    # The one-to-one matching can use cluster 0 -> 0 and cluster 1 -> 1 only: 5 of 7.
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(5 / 7)
    assert hungarian_matching(y_true, y_pred)[0] == 0


def test_perfect_clustering_scores_one():
    y = np.array([2, 2, 0, 0, 1, 1])
    s = score(y, np.array([0, 0, 1, 1, 2, 2]))
    assert all(v == pytest.approx(1.0) for v in s.values())


def test_mismatched_lengths_raise():
    with pytest.raises(DataError, match="equal 1-D"):
        score(np.array([0, 1]), np.array([0, 1, 1]))
