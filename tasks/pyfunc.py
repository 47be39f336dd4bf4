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


class UntrustedModelWarning(UserWarning):
    """A model is loaded from outside the places impactflow writes models to."""


UNTRUSTED = (
    "loading a model from {path}, outside the trusted model folders ({trusted}): an MLflow "
    "pyfunc model is a pickle, and unpickling a file from an untrusted source can execute "
    "arbitrary code. Load only models you or your tracking server wrote."
)


def load_model(model_uri: str, trusted_dirs=("impactflow_runs",)):
    """``mlflow.pyfunc.load_model`` that warns (``UntrustedModelWarning``) when ``model_uri`` is a
    local path outside ``trusted_dirs`` (default: the runs folder). ``runs:/`` and ``models:/``
    URIs come from the configured tracking store and are trusted."""
    import warnings
    from pathlib import Path
    from urllib.parse import urlparse

    parsed = urlparse(model_uri)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else model_uri).resolve()
        roots = [Path(d).resolve() for d in trusted_dirs]
        if not any(path == r or r in path.parents for r in roots):
            warnings.warn(
                UNTRUSTED.format(path=path, trusted=", ".join(map(str, roots))), UntrustedModelWarning, stacklevel=2
            )
    try:
        return mlflow.pyfunc.load_model(model_uri)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in OLD_PACKAGES:
            from impactflow.errors import DataError

            raise DataError(OLD_LAYOUT.format(uri=model_uri, module=exc.name)) from None
        raise


#: the top-level packages of impactflow before it became one import package (``impactflow.*``):
#: a model logged then pickled its wrapper as ``tasks.pyfunc.ImpactflowPyfunc``
OLD_PACKAGES = {"flows", "tasks", "models", "audits", "data_contracts"}
OLD_LAYOUT = (
    "{uri}: this model was logged by an impactflow version before the one import package "
    "(it refers to module {module!r}, now impactflow.{module}); train it again with this "
    "version, or load it with the version that logged it"
)
