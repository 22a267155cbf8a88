"""k-nearest-neighbour label transfer: does a representation keep the groups apart?"""

from __future__ import annotations

import numpy as np


def knn_predict(reference: np.ndarray, labels: np.ndarray, query: np.ndarray, k: int = 5) -> np.ndarray:
    """Majority label among the ``k`` nearest reference rows (Euclidean) of each query row.

    Parameters
    ----------
    reference
        ``(n_ref, d)`` points with known labels.
    labels
        ``(n_ref,)`` labels.
    query
        ``(n_query, d)`` points to label.
    k
        Neighbours.

    Returns
    -------
    ``(n_query,)`` predicted labels.
    """
    from sklearn.neighbors import KNeighborsClassifier

    reference, query = np.asarray(reference), np.asarray(query)
    if reference.ndim != 2 or query.ndim != 2 or reference.shape[1] != query.shape[1]:
        raise ValueError(f"reference and query must be 2-D with equal widths, got {reference.shape}, {query.shape}.")
    if len(reference) != len(labels):
        raise ValueError(f"{len(reference)} reference rows but {len(labels)} labels.")
    if len(reference) < k:
        raise ValueError(f"Need at least k={k} reference rows, got {len(reference)}.")
    clf = KNeighborsClassifier(n_neighbors=k).fit(reference, np.asarray(labels))
    return clf.predict(query)


def knn_accuracy(
    reference: np.ndarray, labels: np.ndarray, query: np.ndarray, query_labels: np.ndarray, k: int = 5
) -> float:
    """Fraction of query rows whose k-NN label (see :func:`knn_predict`) equals their own."""
    pred = knn_predict(reference, labels, query, k)
    return float(np.mean(pred == np.asarray(query_labels)))
