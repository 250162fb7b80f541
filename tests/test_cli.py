"""The command line: the model table, the per-layer summary, and one-line errors with a non-zero status."""

from __future__ import annotations

import subprocess
import sys

import pytest

from resnet.cli import main

from conftest import HANG


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real entry point in a child process (``python -m resnet``), as a user runs it."""
    return subprocess.run([sys.executable, "-m", "resnet", *args], capture_output=True, text=True, timeout=HANG)


def test_models_table_shows_the_paper_layout_and_figures():
    res = run_cli("models")
    assert res.returncode == 0, res.stderr
    rows = {line.split()[0]: line for line in res.stdout.splitlines()[2:]}
    # Table 1 at one decimal: 1.8/3.7/3.9/7.6/11.3 GMACs (paper v1 stride), with the paper's figure beside.
    for name, layout, gmacs, paper in [
        ("resnet18", "[2, 2, 2, 2]", "1.8", "Table 1: 1.8 GMACs"),
        ("resnet34", "[3, 4, 6, 3]", "3.7", "Table 1: 3.6 GMACs"),
        ("resnet50", "[3, 4, 6, 3]", "3.9", "Table 1: 3.8 GMACs"),
        ("resnet101", "[3, 4, 23, 3]", "7.6", "Table 1: 7.6 GMACs"),
        ("resnet152", "[3, 8, 36, 3]", "11.3", "Table 1: 11.3 GMACs"),
    ]:
        assert layout in rows[name] and f" {gmacs}  " in rows[name] and rows[name].endswith(paper)
    for name, params in [("resnet20", "269,722"), ("resnet32", "464,154"), ("resnet44", "658,586")]:
        assert f" {params} " in rows[name]
    assert "853,018" in rows["resnet56"] and "plain110" in rows and "resnet1202" in rows


def test_models_pattern_filter(capsys):
    assert main(["models", "plain5?"]) == 0
    out = capsys.readouterr().out
    assert "plain50" in out and "plain56" in out and "resnet50" not in out


def test_summary_per_layer_table(capsys):
    assert main(["summary", "resnet20"]) == 0
    out = capsys.readouterr().out
    assert "layer3.2.conv2" in out and "64x8x8" in out
    total = [line for line in out.splitlines() if line.startswith("total")][0]
    assert "269,722" in total and "40,551,040" in total


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["summary", "resnet57"], "6n+2"),
        (["summary", "resnt50"], "did you mean resnet50"),
        (["models", "vgg*"], "no registered model matches"),
        (["modles"], "did you mean models"),
    ],
)
def test_bad_input_gives_one_line_and_status_2(args, message):
    res = run_cli(*args)
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_recipe_named_config_yaml_beside_a_checkpoint_is_not_a_run(tmp_path):
    """A fine-tuning project (its recipe + the checkpoint it starts from) is trained as a recipe; only
    what `resnet train` writes (its invocation records) makes a folder's config.yaml stand for its run."""
    from resnet.cli.rundirs import run_of_recipe

    recipe = tmp_path / "config.yaml"
    recipe.write_text("model:\n  name: resnet8\n  init_from: checkpoint.pt\n")
    (tmp_path / "checkpoint.pt").write_bytes(b"weights")
    assert run_of_recipe(str(recipe)) == str(recipe)
    (tmp_path / "invocations.jsonl").write_text("")
    assert run_of_recipe(str(recipe)) == str(tmp_path)
