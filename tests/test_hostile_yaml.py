"""YAML readers under hostile input (issue 12, item 15): recipes, a run's config.yaml, ``--set`` values.

Every test is named after the defect it guards against; each failed before the fix (the 9-level bomb took
minutes and >10 GB there, so the small bombs are the ones that show it).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from resnet.analysis.report import read_run
from resnet.config import dump, load_config, parse_override
from resnet.errors import UserError
from resnet.safe_yaml import MAX_YAML_CHARS, parse_yaml


def alias_bomb(levels: int) -> str:
    """The "billion laughs": each level a list of nine aliases of the one before (9^levels strings)."""
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, levels):
        text += f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}"] * 9) + "]\n"
    return text


def test_a_small_alias_bomb_in_a_recipe_is_refused(tmp_path: Path):
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text("model:\n  name: resnet20\n" + alias_bomb(3))
    with pytest.raises(UserError, match=r"bomb.yaml: not valid YAML \(alias \*a found; aliases are not allowed"):
        load_config(str(recipe))


def test_the_800_byte_billion_laughs_is_refused_at_once(tmp_path: Path):
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(alias_bomb(9))  # 9^9 strings once expanded
    start = time.perf_counter()
    with pytest.raises(UserError, match="alias"):
        load_config(str(recipe))
    assert time.perf_counter() - start < 30  # a hang guard, not a benchmark: the parser stops at the first alias


def test_an_alias_bomb_in_a_run_directory_config_is_refused(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(alias_bomb(3))
    record = read_run("run", run)  # a report names a damaged run instead of failing (or expanding the bomb)
    assert record.status == "damaged" and "alias" in record.problems[0], record.problems


def test_set_values_with_aliases_stay_plain_strings():
    key, value = parse_override("optim.milestones=[&m [1, 2], *m]")
    assert key == "optim.milestones" and value == "[&m [1, 2], *m]"


def test_deep_nesting_and_oversized_files_are_one_clear_line(tmp_path: Path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(UserError, match="nested too deeply"):
        load_config(str(deep))
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * MAX_YAML_CHARS + "\n")
    with pytest.raises(UserError, match="more than the"):
        load_config(str(big))


def test_a_resolved_config_reads_back_identically(tmp_path: Path):
    cfg = load_config("cifar10/resnet110")
    assert parse_yaml(dump(cfg)) == yaml.safe_load(dump(cfg))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab:&*[]{}-,\n '\"!|>?#%@`1.", max_size=120))
def test_any_text_parses_or_fails_as_a_yaml_error(text: str):
    try:
        parse_yaml(text)
    except yaml.YAMLError:
        pass
