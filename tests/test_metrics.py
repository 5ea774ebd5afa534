"""genrekit.metrics: scores agree with scikit-learn, aggregation and the mean-log rule are right."""

from __future__ import annotations

import numpy as np
import pytest

from genrekit.errors import GenrekitError, ModelError
from genrekit.metrics import (
    aggregate_tracks,
    classification_metrics,
    confusion_matrix,
    log_proba,
    mean_log_proba,
    normalised_weights,
    per_class_metrics,
    softmax,
)

CLASSES = ["blues", "jazz", "rock"]


def _labels(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice(CLASSES, n)
    pred = np.where(rng.random(n) < 0.6, y, rng.choice(CLASSES, n))
    return y, pred


def test_metrics_agree_with_sklearn():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y, pred = _labels()
    m = classification_metrics(y, pred, CLASSES)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["confusion"] == confusion_matrix(y, pred, labels=CLASSES).tolist()
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=CLASSES, zero_division=0)
    for i, c in enumerate(CLASSES):
        assert m["per_class"][c]["precision"] == pytest.approx(p[i])
        assert m["per_class"][c]["recall"] == pytest.approx(r[i])
        assert m["per_class"][c]["f1"] == pytest.approx(f[i])
        assert m["per_class"][c]["support"] == s[i]


def test_metrics_reject_unknown_true_label_and_length_mismatch():
    with pytest.raises(GenrekitError, match="pop"):
        classification_metrics(["pop"], ["blues"], CLASSES)
    with pytest.raises(GenrekitError, match="labels"):
        classification_metrics(["blues", "jazz"], ["blues"], CLASSES)


def test_aggregate_mean_log_and_vote():
    tids = ["b", "a", "a", "a"]
    proba = np.array([[0.2, 0.8], [0.9, 0.1], [0.4, 0.6], [0.45, 0.55]])
    ids, p = aggregate_tracks(tids, proba)
    assert ids.tolist() == ["a", "b"]
    assert np.allclose(p.sum(axis=1), 1.0)
    # geometric mean of track a: (0.9*0.4*0.45)^(1/3) vs (0.1*0.6*0.55)^(1/3)
    ga, gb = (0.9 * 0.4 * 0.45) ** (1 / 3), (0.1 * 0.6 * 0.55) ** (1 / 3)
    assert p[0, 0] == pytest.approx(ga / (ga + gb))
    assert p[1].tolist() == pytest.approx([0.2, 0.8])
    # majority vote: two of three segments of "a" vote for class 1 although mean_log prefers class 0
    ids, v = aggregate_tracks(tids, proba, method="vote")
    assert v[0].argmax() == 1 and p[0].argmax() == 0
    assert v[0, 1] == pytest.approx(2 / 3, abs=1e-4)


def test_aggregate_rejects_bad_input():
    with pytest.raises(GenrekitError):
        aggregate_tracks(["a"], np.ones((2, 2)))
    with pytest.raises(GenrekitError, match="method"):
        aggregate_tracks(["a"], np.ones((1, 2)), method="max")


def test_confusion_and_per_class_pieces_match_the_whole():
    y, pred = _labels(seed=2)
    m = classification_metrics(y, pred, CLASSES)
    cm = confusion_matrix(y, pred, CLASSES)
    assert cm.tolist() == m["confusion"]
    assert per_class_metrics(cm, CLASSES) == m["per_class"]
    # a prediction outside the classes is wrong and has no column
    cm = confusion_matrix(["blues", "jazz"], ["blues", "pop"], CLASSES)
    assert cm.sum() == 1 and cm[0, 0] == 1
    assert classification_metrics(["blues", "jazz"], ["blues", "pop"], CLASSES)["accuracy"] == 0.5
    with pytest.raises(GenrekitError, match="empty"):
        confusion_matrix([], [], CLASSES)


def test_per_class_metrics_of_an_unpredicted_class_are_zero_not_nan():
    cm = np.array([[2, 0], [1, 0]])
    pc = per_class_metrics(cm, ["a", "b"])
    assert pc["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert pc["a"]["precision"] == pytest.approx(2 / 3) and pc["a"]["recall"] == 1.0


def test_softmax_rows_sum_to_one_and_do_not_overflow():
    z = np.array([[1000.0, 1000.0, 0.0], [-5.0, 0.0, 5.0]])
    p = softmax(z)
    assert np.allclose(p.sum(axis=1), 1.0) and np.isfinite(p).all()
    assert p[0].tolist() == pytest.approx([0.5, 0.5, 0.0])
    e = np.exp(z[1])
    assert p[1] == pytest.approx(e / e.sum())
    assert softmax(z[1]) == pytest.approx(p[1])  # 1-D: one row


def test_log_proba_floors_zeros():
    assert log_proba([0.0, 1.0]).tolist() == pytest.approx([np.log(1e-12), 0.0])
    assert log_proba([0.5], floor=None)[0] == pytest.approx(np.log(0.5))


def test_mean_log_proba_is_the_normalised_weighted_geometric_mean():
    p = np.array([[0.9, 0.1], [0.2, 0.8]])
    q = np.array([[0.5, 0.5], [0.6, 0.4]])
    out = mean_log_proba([p, q], [3, 1])
    g = p**0.75 * q**0.25
    assert out == pytest.approx(g / g.sum(axis=1, keepdims=True))
    # no weights: experts count equally; windows of one track [n, k] give one [k] row
    assert mean_log_proba([p, q]) == pytest.approx(mean_log_proba([p, q], [1, 1]))
    g = np.sqrt(p[0] * p[1])
    assert mean_log_proba(p) == pytest.approx(g / g.sum())
    # a zero is floored rather than vetoing its class
    assert mean_log_proba([[1.0, 0.0], [0.0, 1.0]]).tolist() == pytest.approx([0.5, 0.5])


def test_normalised_weights_checks_and_scales():
    assert normalised_weights(None, 4).tolist() == [0.25] * 4
    assert normalised_weights([1, 3], 2).tolist() == [0.25, 0.75]
    for bad in ([1.0], [-1.0, 2.0], [0.0, 0.0]):
        with pytest.raises(ModelError, match="weights"):
            normalised_weights(bad, 2)
    with pytest.raises(ModelError):
        mean_log_proba([np.ones((1, 2)) / 2] * 2, [1.0])


def test_aggregate_mean_log_equals_mean_log_proba_per_track():
    rng = np.random.default_rng(3)
    proba = rng.dirichlet(np.ones(4), 9)
    tids = np.array(list("abcabcaab"))
    ids, p = aggregate_tracks(tids, proba)
    for i, t in enumerate(ids):
        assert p[i] == pytest.approx(mean_log_proba(proba[tids == t]), abs=1e-12)
