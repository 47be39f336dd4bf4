"""The MLflow pyfunc wrapper of every impactflow model (raw rows in, score + label out)."""
from __future__ import annotations

import mlflow.pyfunc
import pandas as pd


class ImpactflowPyfunc(mlflow.pyfunc.PythonModel):
    def __init__(self, predictor, threshold: float = 0.5) -> None:
        self.predictor = predictor
        self.threshold = float(threshold)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        score = self.predictor.predict_proba(model_input)
        return pd.DataFrame({"score": score, "label": (score >= self.threshold).astype(int)})
