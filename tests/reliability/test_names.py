"""Path traversal (issue 28, defect 4): every user-supplied name that becomes part of a path is
a safe slug (``impactflow.data_contracts.names``) or one clear error naming the argument, before anything
is written."""

from __future__ import annotations

import os

import pytest

from impactflow.errors import ConfigError
from impactflow.data_contracts.names import is_safe_name, safe_name


@pytest.mark.parametrize("name", ["external-model", "impactflow-audit-only", "m.v2_1", "A", "x" * 100])
def test_safe_names_pass_unchanged(name):
    assert is_safe_name(name) and safe_name(name, "--model-name") == name


@pytest.mark.parametrize(
    "name",
    [
        "../../x/PWNED",
        "..",
        ".",
        ".hidden",
        "-rf",
        "a/b",
        "a\\b",
        "",
        "a b",
        "modèle",
        "x" * 101,
        "a\0b",
        "a..b",
        "/etc/passwd",
        None,
        3,
    ],
)
def test_unsafe_names_are_refused_naming_the_argument(name):
    assert not is_safe_name(name)
    with pytest.raises(ConfigError, match=r"^--experiment .*: not a safe name; use 1-100 ASCII letters"):
        safe_name(name, "--experiment")


def test_audit_refuses_a_traversing_model_name_before_writing_anything(tmp_path, monkeypatch):
    """``--model-name ../../…/PWNED`` wrote audits.json outside the run folder."""
    from typer.testing import CliRunner

    from impactflow.flows.cli import app

    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    (work / "t.csv").write_text("y,g,s\n1,a,0.9\n0,b,0.1\n")
    monkeypatch.chdir(work)
    for option, value in (("--model-name", "../../../PWNED"), ("--experiment", "../e")):
        result = CliRunner().invoke(
            app, ["audit", "--data", "t.csv", "--label", "y", "--score", "s", "--sensitive", "g", option, value]
        )
        out = " ".join(result.output.split())
        assert result.exit_code == 2, out
        assert out.startswith(f"error: {option} '{value}': not a safe name"), out
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "c", "t.csv"]


def test_audit_flow_refuses_unsafe_names_before_tracking(tmp_path):
    from impactflow.flows.audit_only import audit_only_flow

    (tmp_path / "t.csv").write_text("y,g,s\n1,a,0.9\n")
    for kwargs in ({"model_name": "../PWNED"}, {"experiment": "a/b"}):
        with pytest.raises(ConfigError, match="not a safe name"):
            audit_only_flow.fn(
                data=str(tmp_path / "t.csv"),
                label="y",
                sensitive=["g"],
                score="s",
                output_dir=str(tmp_path / "runs"),
                **kwargs,
            )
    assert not (tmp_path / "runs").exists()


def test_config_refuses_an_unsafe_experiment_and_a_preset_name_that_is_a_path(tmp_path, monkeypatch):
    from impactflow.flows.config import load_config

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^tracking.experiment '\.\./\.\./x': not a safe name"):
        load_config("tabular", ["tracking.experiment=../../x"])
    assert load_config("tabular", ["tracking.experiment=my-exp_1"]).experiment_name == "my-exp_1"
    # a preset is a name in flows/presets, never a path out of it (this one resolved to tabular.yaml
    # through "..", and became preset '../presets/tabular')
    assert not os.path.exists("../presets/tabular")
    with pytest.raises(ConfigError, match=r"^--config '\.\./presets/tabular': no such preset or file"):
        load_config("../presets/tabular")
