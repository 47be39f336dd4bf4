"""Issue 28, defect 2: data values that look like markup never become markup in what people open.

Group values, column names and cell values such as ``<script>alert(1)</script>`` or
``<img src=x onerror=...>`` are planted in the data; the GX Data Docs (hashed into the evidence,
logged to MLflow, recommended by the CLI) must show them as text, load nothing from other
hosts and run no script; the Markdown report must turn ``[x](javascript:...)`` and
``![](http://...)`` into plain text. ``unsafe_markup`` is the scan: a ``<script`` tag, an
``on*=`` attribute, a ``javascript:`` URL, a remote ``src``/``href``, or an iframe/object/svg.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from impactflow.data_contracts.docs_html import sanitise_page, unsafe_markup

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
LINK = "[click](javascript:alert(3))"
REMOTE_IMAGE = "![](http://attacker.example/pixel.png)"


def scan_html(folder: Path) -> dict[str, list[str]]:
    """{relative path: unsafe kinds} for every HTML file under ``folder`` that has any."""
    found = {}
    for page in Path(folder).rglob("*.htm*"):
        kinds = unsafe_markup(page.read_text(encoding="utf-8", errors="replace"))
        if kinds:
            found[str(page.relative_to(folder))] = kinds
    return found


# --------------------------------------------------------------------------- the sanitiser


@pytest.mark.parametrize(
    "markup, kind",
    [
        ('<script src="https://cdn.example/x.js"></script>', "script tag"),
        ("<td><img src=x onerror=alert(2)></td>", "event handler attribute"),
        ('<a href="javascript:alert(1)">x</a>', "javascript: URL"),
        ('<a href=" JavaScript:alert(1)">x</a>', "javascript: URL"),
        ('<a href="java&#9;script:alert(1)">x</a>', "javascript: URL"),
        ('<link rel="stylesheet" href="https://cdn.example/b.css">', "remote src/href"),
        ('<img src="//attacker.example/p.png">', "remote src/href"),
        ("<iframe src=x></iframe>", "iframe/object/embed"),
        ("<svg onload=alert(1)>", "event handler attribute"),
    ],
)
def test_each_kind_of_unsafe_markup_is_found_then_removed(markup, kind):
    page = f"<!DOCTYPE html><html><head><title>t</title></head><body>{markup}</body></html>"
    assert kind in unsafe_markup(page)
    assert unsafe_markup(sanitise_page(page)) == []


def test_data_markup_reads_as_text_and_gx_markup_survives():
    page = (
        "<html><head><style>.a{background:url('https://x.example/l.png')}</style>"
        '<link rel="stylesheet" href="https://cdn.example/b.css"></head><body>'
        '<table><tr><td class="c" style="color:red">' + IMG + "</td><td><iframe src=x></iframe></td></tr></table>"
        '<a href="../index.html">Home</a><a href="#s1">s1</a><a href="https://greatexpectations.io">GX</a>'
        '<img src="../../static/images/logo-long.png">'
        '<meta http-equiv="refresh" content="0;url=https://attacker.example"><style>*{}</style>'
        "</body></html>"
    )
    out = sanitise_page(page)
    assert unsafe_markup(out) == []
    assert "&lt;img src=x onerror=alert(2)&gt;" in out  # visible as the value it is
    assert "&lt;iframe src=x&gt;" in out
    cell = sanitise_page(
        "<html><body><table><tr><td><span>" + SCRIPT + "</span></td></tr></table>"
        "<script>var gx = 1;</script><p>after</p></body></html>"
    )
    assert "<td><span>&lt;script&gt;alert(1)&lt;/script&gt;</span></td>" in cell  # a value in a cell: text
    assert "gx = 1" not in cell and "<p>after</p>" in cell  # GX's own script outside cells: dropped
    tricks = sanitise_page(
        '<html><body><a href="java&#9;script:alert(1)">t</a>'
        '<p style="background:\\75 rl(http://x.example/p)">s</p></body></html>'
    )
    assert "<a>t</a>" in tricks and "<p>s</p>" in tricks  # tab inside the scheme; a CSS escape
    assert '<td class="c" style="color:red">' in out and "<table>" in out
    assert '<a href="../index.html">Home</a>' in out and '<a href="#s1">' in out
    assert "<a>GX</a>" in out  # the link to another host loses its href, keeps its text
    assert '<img src="../../static/images/logo-long.png">' in out
    assert "https://" not in out.split("</head>")[0] and "cdn.example" not in out  # CSS url(), CDN <link>
    assert "&lt;meta http-equiv" in out and "&lt;style&gt;" in out  # head-only tags in the body: text
    assert 'http-equiv="Content-Security-Policy"' in out and "script-src" not in out  # default-src 'none'


def test_sanitising_twice_changes_nothing():
    page = "<html><head><title>t</title></head><body><p>" + IMG + SCRIPT + "</p></body></html>"
    once = sanitise_page(page)
    assert sanitise_page(once) == once
    assert once.count("Content-Security-Policy") == 1 and unsafe_markup(once) == []


# --------------------------------------------------------------------------- descriptions


def test_group_values_are_escaped_in_descriptions_and_plain_in_messages(tmp_path):
    """The suite's descriptions hold no raw tag; a failing group's message quotes the value as
    it is (the CLI and the report escape for their own medium)."""
    import pandas as pd

    from impactflow.data_contracts.predictions import (
        predictions_contract,
        predictions_suite,
        sensitive_as_text,
        write_suite,
    )
    from impactflow.data_contracts.validation import validate

    df = sensitive_as_text(
        pd.DataFrame({"y": [0, 1] * 4, "score": [0.2, 0.8] * 4, "grp": [SCRIPT] * 2 + ["b"] * 6}), ["grp"]
    )
    suite = predictions_suite(
        df, name="p", label="y", label_set=[0, 1], score="score", prediction=None, sensitive=["grp"], min_group_size=3
    )
    descriptions = [e["description"] for e in suite["expectations"] if "description" in e]
    assert descriptions == [
        "Sensitive group grp == &lt;script&gt;alert(1)&lt;/script&gt;: at least 3 rows",
        "Sensitive group grp == b: at least 3 rows",
    ]
    contract = predictions_contract(
        name="p",
        label="y",
        positive_label=None,
        sensitive=["grp"],
        min_group_size=3,
        suite_path=write_suite(suite, tmp_path / "s.json"),
        source="test",
        columns=list(df.columns),
    )
    report = validate(df, contract, tmp_path / "data_docs")
    assert [f.description for f in report.failures] == [f"Sensitive group grp == {SCRIPT}: at least 3 rows"]
    assert scan_html(tmp_path / "data_docs") == {}


def test_data_docs_show_planted_values_as_text_with_tables_and_offline(tmp_path):
    """Tags in a column name, group values and unexpected label values: every page is free of
    executable or remote markup, the planted values read as text, the validation page keeps its
    tables, and the index links every page (GX's index is built by JavaScript)."""
    import pandas as pd

    from impactflow.data_contracts.predictions import (
        predictions_contract,
        predictions_suite,
        sensitive_as_text,
        write_suite,
    )
    from impactflow.data_contracts.validation import validate

    col = IMG
    df = sensitive_as_text(
        pd.DataFrame({"y": [0, 1, 0, 1, 0, 1, 0, 1], "score": [0.2, 0.8] * 4, col: [SCRIPT] * 4 + ["b"] * 4}), [col]
    )
    suite = predictions_suite(
        df, name="p", label="y", label_set=[0, 1], score="score", prediction=None, sensitive=[col], min_group_size=2
    )
    bad = df.assign(y=["<b onmouseover=alert(4)>yes</b>", 1, 0, 1, 0, 1, 0, 1])  # unexpected label value
    contract = predictions_contract(
        name="p",
        label="y",
        positive_label=None,
        sensitive=[col],
        min_group_size=2,
        suite_path=write_suite(suite, tmp_path / "s.json"),
        source="test",
        columns=list(df.columns),
    )
    report = validate(bad, contract, tmp_path / "data_docs")
    assert not report.success
    docs = tmp_path / "data_docs"
    assert scan_html(docs) == {}
    pages = sorted(p.relative_to(docs).as_posix() for p in docs.rglob("*.html"))
    assert len(pages) == 3 and pages[0] == "expectations/p.html" and pages[1] == "index.html"
    validation_page = (docs / pages[2]).read_text()
    assert "&lt;img src=x onerror=alert(2)&gt;" in validation_page  # the column name, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in validation_page  # a group value, as text
    assert "&lt;b onmouseover=alert(4)&gt;yes&lt;/b&gt;" in validation_page  # the unexpected value
    assert validation_page.count("<table") >= 3 and validation_page.count("<td") >= 10
    index = (docs / "index.html").read_text()
    assert f'href="{pages[0]}"' in index and f'href="{pages[2]}"' in index


# --------------------------------------------------------------------------- the Markdown report


def test_markdown_report_renders_no_link_image_or_tag_from_user_strings():
    """Planted in a group value, a column (sensitive attribute) name, a model name, a gate note
    and a use: statement; rendered Markdown -> HTML (mistune, as a viewer would) has no <a>,
    no <img> and no raw tag from them."""
    import mistune

    from impactflow.audits.render import render_markdown
    from impactflow.audits.report import build_report
    from tests.report.conftest import make_inputs

    inputs = make_inputs(failing=True)
    planted = [LINK, REMOTE_IMAGE, SCRIPT, "[ref]: javascript:alert(5)"]
    inputs["data"]["representation"][1]["group"] = LINK
    inputs["models"][0]["audits"]["fairness"]["by_group"][1]["group"] = REMOTE_IMAGE
    inputs["models"][1]["audits"]["fairness"]["gates"][0]["note"] = SCRIPT + " " + LINK
    inputs["data"]["sensitive"] = ["sex", "[ref]: javascript:alert(5)"]
    inputs["models"][1]["name"] = "![x](http://attacker.example/m.png)"
    inputs["config"]["use"] = {"purpose": LINK + " " + REMOTE_IMAGE, "intended_users": "[ref]"}
    md = render_markdown(build_report(**inputs))
    outside_code = re.sub(r"(`{3,})json\n.*?\n\1", "", md, flags=re.S)  # the config appendix quotes it verbatim
    assert "attacker.example" in md.split("Appendix B")[-1] and all(p not in outside_code for p in planted)
    rendered = mistune.html(md)
    assert "<a " not in rendered and "<img" not in rendered and "<script" not in rendered
    assert "attacker.example/pixel.png" in rendered  # the text itself is still shown


# --------------------------------------------------------------------------- real runs (e2e)


@pytest.mark.e2e
def test_run_and_audit_folders_hold_no_executable_markup(cli, tmp_path):
    """`impactflow audit` on a table whose sensitive column and group values are tags, and
    `impactflow run` on Adult rows with a planted `sex` value and a tag-named extra column (the
    contract fails: its Data Docs tabulate the unexpected values): every HTML file either run
    leaves (Data Docs, MLflow's copies, the report) has no executable or remote markup, and the
    planted values are there as text."""
    import numpy as np
    import pandas as pd

    from impactflow.data_contracts import get_contract, load_dataset

    rng = np.random.default_rng(0)
    n = 600
    groups = np.array([SCRIPT, "<img src=y onerror=alert(5)>", "plain"])[np.arange(n) % 3]
    y = rng.integers(0, 2, n)
    table = pd.DataFrame({"y": y, "score": np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1), "grp": groups})
    preds = tmp_path / "preds.csv"
    table.to_csv(preds, index=False)
    out = tmp_path / "runs"
    r = cli(
        "audit",
        "--data",
        str(preds),
        "--label",
        "y",
        "--score",
        "score",
        "--sensitive",
        "grp",
        "--model-name",
        "scorer",
        "--output-dir",
        str(out),
    )
    assert r.returncode in (0, 3), r.stdout + r.stderr  # pass, or gates failed: either way a report
    assert "Traceback" not in r.stderr
    # the sensitive column itself named with a tag: its Data Docs are written before the metrics
    # are logged (MLflow refuses '<' in a metric name: the exit code is issue 28 defect 7's, not checked here)
    table.rename(columns={"grp": IMG}).to_csv(preds, index=False)
    cli("audit", "--data", str(preds), "--label", "y", "--score", "score", "--sensitive", IMG, "--output-dir", str(out))

    adult = load_dataset(get_contract("adult")).sample(n=400, random_state=0).reset_index(drop=True)
    adult.loc[:4, "sex"] = [SCRIPT, IMG, SCRIPT, IMG, "<b onmouseover=alert(6)>x</b>"]
    adult[IMG] = 1  # a column the contract does not know, named with a tag
    data = tmp_path / "adult.csv"
    adult.to_csv(data, index=False)
    r = cli(
        "run", "--set", f"data.path={data}", "--set", f"tracking.output_dir={out}", "--set", "model.params.epochs=1"
    )
    assert r.returncode == 1 and "contract" in r.stderr.lower() and "Traceback" not in r.stderr, r.stderr

    pages = list(out.rglob("*.htm*"))
    docs = [p for p in pages if "data_docs" in p.parts]
    assert len({p.parent for p in docs if p.name == "index.html"}) >= 3  # every run wrote Data Docs
    assert scan_html(out) == {}
    text = "".join(p.read_text(errors="replace") for p in docs)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;img src=x onerror=alert(2)&gt;" in text
    assert "&lt;b onmouseover=alert(6)&gt;" in text
    for md in out.rglob("*.md"):
        # outside fenced code blocks (the config appendix quotes the arguments verbatim, as code)
        prose = re.sub(r"^(`{3,}).*?^\1", "", md.read_text(), flags=re.S | re.M)
        assert "<script" not in prose and "<img" not in prose


def test_an_escaped_value_inside_a_quoted_attribute_is_no_event_handler():
    """The report's figure alt text quotes a column named '<img src=x onerror=…>', escaped inside
    a quoted attribute: a browser reads one attribute 'alt', no handler (the scan flagged it)."""
    from impactflow.data_contracts.docs_html import unsafe_markup

    assert unsafe_markup('<img src="data:image/png;base64,AA" alt="by &lt;img src=x onerror=alert(2)&gt;">') == []
    assert unsafe_markup('<img src="data:x" alt="a" onerror="alert(1)">') == ["event handler attribute"]
