"""Model families: each fits on feature arrays, saves to a folder and loads a predictor.

A family never sees raw rows: the fitted feature pipeline runs first, everywhere. Families are
looked up by name (``train.families`` in the config) through :func:`get_family`; a new one
joins with :func:`register_family` or a ``raypipe.families`` entry point.
"""

from pipelines.families.base import (
    BaseFamily,
    Family,
    FitContext,
    FitResult,
    NativeModel,
    Predictor,
    Standardizer,
    TrainData,
    score,
)
from pipelines.families.registry import (
    UnknownFamilyError,
    family_names,
    get_family,
    load_predictor,
    register_family,
)

__all__ = [
    "BaseFamily",
    "Family",
    "FitContext",
    "FitResult",
    "NativeModel",
    "Predictor",
    "Standardizer",
    "TrainData",
    "UnknownFamilyError",
    "family_names",
    "get_family",
    "load_predictor",
    "register_family",
    "score",
]
