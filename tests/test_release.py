"""Release hygiene: one version everywhere, a licence file that matches the declared one, the wheel's contents."""

from __future__ import annotations

import re

import pytest
import yaml

import resnet

from conftest import HANG, ROOT

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


def test_bibtex_agrees_with_citation_cff():
    from resnet.paper import BIBTEX

    cited = yaml.safe_load((ROOT / "CITATION.cff").read_text())["preferred-citation"]
    fields = dict(re.findall(r"^\s*(\w+)\s*=\s*\{(.*)\},?$", BIBTEX, re.M))
    assert fields["title"] == cited["title"] and fields["booktitle"] == cited["collection-title"]
    names = [f"{a['family-names']}, {a['given-names']}" for a in cited["authors"]]
    assert fields["author"] == " and ".join(names)
    assert (fields["year"], fields["pages"]) == (str(cited["year"]), f"{cited['start']}--{cited['end']}")
    assert fields["doi"] == cited["doi"]


def test_torch_floor_is_the_torch_the_tests_run_on():
    """The declared range starts at the torch that the set-up installs and CI tests (Makefile TORCH_PIN): an
    older floor would promise releases nobody tested; a pin above the floor would leave the floor untested."""
    import torch

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floor = next(d for d in deps if d.startswith("torch")).removeprefix("torch>=")
    pin = re.search(r"^TORCH_PIN \?= torch==(\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert tuple(map(int, pin.split(".")[:2])) == tuple(map(int, floor.split(".")[:2])), (floor, pin)
    running = tuple(int(v) for v in re.findall(r"\d+", torch.__version__)[:2])
    assert running >= tuple(map(int, floor.split(".")[:2])), f"torch {torch.__version__} is below the floor {floor}"


def test_project_metadata_is_complete():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["authors"] and project["keywords"] and project["urls"]["Paper"] == "https://arxiv.org/abs/1512.03385"
    classifiers = set(project["classifiers"])
    assert "License :: OSI Approved :: MIT License" in classifiers
    assert {f"Programming Language :: Python :: 3.{v}" for v in (10, 11)} <= classifiers
    assert project["requires-python"] == ">=3.10"
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert [a["name"] for a in citation["authors"]] == [a["name"] for a in project["authors"]]
    hub = project["optional-dependencies"]["hub"]
    assert any(d.startswith("huggingface_hub") for d in hub) and not any(d.startswith("torch") for d in hub)


def test_the_wheel_carries_citation_configs_and_metadata(tmp_path):
    """Built as a user's pip would (the same backend, no network: --no-build-isolation)."""
    import subprocess
    import sys
    import zipfile

    pytest.importorskip("hatchling", reason="the build backend (dev extra) is not installed")
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    subprocess.run([*cmd, str(ROOT)], check=True, capture_output=True, timeout=HANG)
    (wheel,) = tmp_path.glob("resnet_paper-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert z.read("resnet/CITATION.cff") == (ROOT / "CITATION.cff").read_bytes()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "resnet/configs/cifar10/resnet56.yaml" in names and "resnet/py.typed" in names
    for line in (
        "Author: The resnet-paper authors",
        "Project-URL: Paper, https://arxiv.org/abs/1512.03385",
        "Classifier: License :: OSI Approved :: MIT License",
        "Requires-Dist: torch>=2.13",
        "Provides-Extra: hub",
    ):
        assert line in meta.splitlines(), line
    assert re.search(r"^Keywords: .*ResNet", meta, re.M)
