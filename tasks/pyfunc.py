"""The MLflow pyfunc wrapper of every impactflow model (raw rows in, score + label out)."""
from __future__ import annotations

import mlflow.pyfunc
import pandas as pd


class ImpactflowPyfunc(mlflow.pyfunc.PythonModel):
    """Binary: columns ``score`` (P(positive)) and ``label``; multiclass: ``label`` and one
    ``prob_<class>`` per class; rating: ``rating``."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.predictor.predict_frame(model_input)
