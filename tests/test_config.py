"""Recipes: the YAML files match the paper; precedence, typing and errors of overrides."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from resnet.config import Config, config_roots, find_config, load_config
from resnet.errors import UserError
from resnet.models import list_models, model_info

CIFAR_RECIPES = sorted(p.stem for p in (config_roots()[0] / "cifar10").glob("*.yaml"))


def test_every_cifar_model_has_a_recipe():
    assert set(CIFAR_RECIPES) == {n for n in list_models() if model_info(n).family == "cifar"}


@pytest.mark.parametrize("name", CIFAR_RECIPES)
def test_cifar_recipes_are_the_paper_s(name: str):
    cfg = load_config(f"cifar10/{name}")
    assert cfg.model.name == name
    assert cfg.train.batch_size == 128
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.1, 0.9, 1e-4)
    assert cfg.schedule.milestones == [32_000, 48_000] and cfg.schedule.iterations == 64_000
    assert cfg.schedule.gamma == 0.1
    assert cfg.data.normalize == "pixel_mean" and cfg.data.pad == 4 and cfg.data.augment and cfg.data.flip
    assert cfg.data.val_fraction == 0.0  # section 4.2: all 50k training images
    deep = name.endswith(("110", "1202"))
    assert (cfg.schedule.warmup_lr == 0.01) == deep
    if deep:
        assert cfg.schedule.warmup_until_error == 80.0


def test_precedence_defaults_file_overrides(tmp_path: Path):
    f = tmp_path / "r.yaml"
    f.write_text("optim: {lr: 0.05}\ntrain: {seed: 3}\n")
    cfg = load_config(str(f), ["train.seed=7", "schedule.milestones=[10, 20]", "optim.weight_decay=5e-4"])
    assert cfg.optim.lr == 0.05 and cfg.train.seed == 7 and cfg.schedule.milestones == [10, 20]
    assert cfg.optim.weight_decay == 5e-4  # "5e-4" is a string to YAML 1.1; the float field accepts it
    assert cfg.optim.momentum == Config().optim.momentum


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lrr=0.1"], "did you mean optim.lr"),
        (["train.sed=1"], "did you mean train.seed"),
        (["optim.lr=fast"], "expects float"),
        (["train.seed=1.5"], "expects int"),
        (["optim.lr"], "key=value"),
        (["data.normalize=zca"], "choose one of pixel_mean, channel_mean_std"),
        (["schedule.milestones=[48000, 32000]"], "increasing"),
        (["train.batch_size=0"], "positive"),
        (["schedule.gamma=0"], "schedule.gamma' is 0.0; it must be in (0, 1]"),
        (["data.pad=-1"], "data.pad' is -1; it must be 0 or more"),
        (["optim.lr=1e300"], "below float32's 3.4e38"),
        (["optim.momentum=1.5"], "in [0, 1)"),
    ],
)
def test_bad_overrides(overrides: list[str], message: str):
    with pytest.raises(UserError, match=re.escape(message)):
        load_config("cifar10/resnet20", overrides)


def test_bad_files(tmp_path: Path):
    bad_key = tmp_path / "a.yaml"
    bad_key.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(UserError, match=r"a.yaml: unknown config key 'optim.learning_rate'"):
        load_config(str(bad_key))
    broken = tmp_path / "b.yaml"
    broken.write_text("optim: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(str(broken))
    with pytest.raises(UserError, match="did you mean cifar10/resnet56"):
        find_config("cifar10/resnet65")


# Issue 12, defect 11: ranges, not only types, for every numeric key.


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("schedule.warmup_until_error=.nan", "'schedule.warmup_until_error' is nan; it must be a finite number"),
        ("schedule.warmup_until_error=-5", "must be a positive training error in percent"),
        ("schedule.warmup_until_error=0", "must be a positive training error in percent"),
        ("schedule.plateau_min_delta=-1", "0 or more points of error"),
        ("schedule.plateau_min_delta=.inf", "finite number"),
        ("data.lighting=.inf", "finite number"),
        ("data.crop=0", "'data.crop' is 0; it must be a positive whole number"),
        ("data.eval_resize=200", "data.crop <= data.eval_resize"),
        ("schedule.milestones=[-5, 10]", "a list of positive whole numbers"),
        ("train.seed=-1", "[0, 2^63)"),
        ("train.eval_limit=-5", "null or a positive whole number"),
        ("data.workers=-2", "0 to 512"),
        ("optim.lr=.nan", "finite number"),
        ("data.val_fraction=.nan", "finite number"),
    ],
)
def test_defect11_out_of_range_values_are_refused(override: str, message: str):
    with pytest.raises(UserError, match=re.escape(message)):
        load_config("cifar10/resnet20", [override])


def test_defect11_every_numeric_key_has_a_range():
    import typing

    from resnet.config import RANGES, all_keys, get_key

    numeric = []
    for key in all_keys():
        section, _, name = key.rpartition(".")
        owner = type(get_key(Config(), section)) if section else Config
        hint = str(typing.get_type_hints(owner)[name])
        if "int" in hint or "float" in hint:
            numeric.append(key)
    assert numeric and sorted(set(numeric) - set(RANGES)) == []
    for key in numeric:  # and the default recipe passes every one of them
        assert RANGES[key][0](get_key(Config(), key)), key
