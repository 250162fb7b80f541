"""Release hygiene: one version everywhere, a licence file that matches the declared one, the wheel's contents."""

from __future__ import annotations

import re

import pytest
import yaml

import resnet

from conftest import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def test_version_is_written_once_and_cited_consistently():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"] and "version" not in pyproject["project"]
    assert pyproject["tool"]["hatch"]["version"]["path"] == "src/resnet/version.py"
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["version"] == resnet.__version__
    assert re.search(rf"^## \[{re.escape(resnet.__version__)}\]", (ROOT / "CHANGELOG.md").read_text(), re.M)


def test_licence_file_matches_the_declared_licence():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == {"text": "MIT"}
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert yaml.safe_load((ROOT / "CITATION.cff").read_text())["license"] == "MIT"


def test_citation_carries_the_paper():
    cited = yaml.safe_load((ROOT / "CITATION.cff").read_text())["preferred-citation"]
    assert cited["title"] == "Deep Residual Learning for Image Recognition"
    assert [a["family-names"] for a in cited["authors"]] == ["He", "Zhang", "Ren", "Sun"]
    assert (cited["year"], cited["start"], cited["end"]) == (2016, 770, 778)
