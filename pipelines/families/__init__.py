"""Model families: each fits on feature arrays, saves to a folder and loads a predictor.

A family never sees raw rows: the fitted feature pipeline runs first, everywhere. Families are
looked up by name (``train.families`` in the config) through :func:`get_family`.
"""

from pipelines.families.base import Family, FitContext, FitResult, Predictor, TrainData
from pipelines.families.registry import FAMILY_NAMES, get_family, load_predictor

__all__ = [
    "FAMILY_NAMES",
    "Family",
    "FitContext",
    "FitResult",
    "Predictor",
    "TrainData",
    "get_family",
    "load_predictor",
]
