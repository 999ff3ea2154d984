"""The README is a front page: short, narrow tables, every implemented method cited, the licence it declares."""

from __future__ import annotations

import re

import tomllib

from .conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_the_readme_is_a_front_page_of_at_most_200_lines():
    assert len(README.splitlines()) <= 200


def test_no_readme_table_is_wider_than_eight_columns():
    headers = [line for line in README.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    widths = [line.count("|") - 1 for line in headers]
    assert widths and max(widths) <= 8, max(widths)


def test_every_method_sidrec_implements_is_cited():
    citations = README[README.index("## Citations") :]
    for method in ("TIGER", "DIGER", "SODA", "DMRec", "LETTER", "ETEGRec", "SASRec", "Mult-VAE"):
        assert re.search(rf"^- {re.escape(method)}:", citations, flags=re.M), method


def test_the_full_results_live_in_docs_results_and_are_rendered_there():
    results = (ROOT / "docs" / "results.md").read_text()
    blocks = re.findall(r"<!-- (?:results|speed):[^>]+-->", results)
    assert len(blocks) >= 10  # the 10 tables the README held before it became a front page


def test_the_licence_file_matches_what_the_package_and_the_cards_declare():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    licence = (ROOT / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    for card in ("card.py", "baseline_card.py"):
        assert 'license="apache-2.0"' in (ROOT / "model_cards" / card).read_text()
