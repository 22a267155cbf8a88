"""Metrics: how faithful a representation or a generated sample is."""

from .knn import knn_accuracy, knn_predict

__all__ = ["knn_accuracy", "knn_predict"]
