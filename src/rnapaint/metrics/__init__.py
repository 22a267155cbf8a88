"""Metrics: how faithful a representation or a generated sample is."""

from .artifacts import CheckerboardScore, checkerboard
from .composition import composition_agreement
from .faithfulness import (
    FidelityDifference,
    FidelityScore,
    RetrievalScore,
    condition_fidelity,
    fidelity_difference,
    retrieval,
)
from .knn import knn_accuracy, knn_predict
from .nuclei import NucleiFeatures, compare_nuclei, nuclei, segment_nuclei
from .realism import RealismScore, fid, kid, realism_by_group, tile_features

__all__ = [
    "CheckerboardScore",
    "FidelityDifference",
    "FidelityScore",
    "NucleiFeatures",
    "RealismScore",
    "RetrievalScore",
    "checkerboard",
    "compare_nuclei",
    "composition_agreement",
    "condition_fidelity",
    "fid",
    "fidelity_difference",
    "kid",
    "knn_accuracy",
    "knn_predict",
    "nuclei",
    "realism_by_group",
    "retrieval",
    "segment_nuclei",
    "tile_features",
]
