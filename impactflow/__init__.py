"""impactflow: responsible model training as a Prefect pipeline (data contracts, training with
optional differential privacy, bias and privacy audits, MLflow tracking, a signed report).

One import package. The repository keeps the top-level folders ``flows/``, ``tasks/``,
``models/``, ``audits/`` and ``data_contracts/``; installed, they are ``impactflow.flows``,
``impactflow.tasks``, ... (``pyproject.toml``'s ``package-dir``), so a user's own ``models`` or
``tasks`` package is never shadowed. In a source checkout (this folder's parent holds
``pyproject.toml`` and those folders) the same names resolve to the folders through this
package's ``__path__``: with an editable install, or with only the checkout on ``sys.path``.
"""

from __future__ import annotations

from pathlib import Path as _Path

_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "flows" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # noqa: F821 - a package's __path__
del _Path, _checkout
