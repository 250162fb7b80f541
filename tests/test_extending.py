"""Extending the project from outside: a new model family with its own keyword, and a new experiment.

Each extension is ONE file outside the package, written here into ``tmp_path`` and loaded the way a user's
file is (``RESNET_PLUGINS=path.py,...``, :mod:`resnet.plugins`). Then every command runs on them: ``models``,
``train``, ``eval``, ``predict``, ``convert`` (our checkpoint, and bare weights named from their shapes),
``export`` and ``reproduce``, on the genuine CIFAR-10 subset, a few iterations each; nothing may label the
new family with the paper's figures. A third file adds an in-memory dataset, trained, evaluated and
predicted on with its own class names.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet.cli import main

#: A double-width CIFAR family: ``wresnet<6n+2>`` with the keyword ``width`` (a multiplier of 16/32/64).
WIDE_FAMILY = '''
"""Wide CIFAR ResNets: section 4.2's nets with every stage ``width`` times wider (not in the paper)."""
import dataclasses
import functools

from resnet.models.arch import cifar_architecture
from resnet.models.catalog import ModelInfo
from resnet.models.registry import register_family, register_model

KWARGS = ("num_classes", "in_channels", "shortcut", "width", "zero_init_residual")


def wide_architecture(depth, *, width=2, num_classes=10, in_channels=3, shortcut="A"):
    if type(width) is not int or width < 1:
        raise ValueError(f"width must be a whole number >= 1, got {width!r}")
    arch = cifar_architecture(depth, num_classes=num_classes, in_channels=in_channels, shortcut=shortcut)
    return dataclasses.replace(arch, widths=tuple(w * width for w in arch.widths))


def build(depth, *, zero_init_residual=False, **kwargs):
    from resnet.models.network import ResNet

    return ResNet.from_architecture(wide_architecture(depth, **kwargs), zero_init_residual=zero_init_residual)


def wide_info(depth):
    return ModelInfo(
        name=f"wresnet{depth}", family="wide", builder=functools.partial(build, depth), kwargs=KWARGS,
        input_size=(3, 32, 32), depth=depth, residual=True, doc=f"wide CIFAR ResNet-{depth}",
        architecture=functools.partial(wide_architecture, depth),
    )


def layouts(arch):
    """Weights with three equal stages of basic blocks at 2x, 3x, ... the CIFAR widths are ours."""
    k, rest = divmod(arch.widths[0], 16)
    if arch.stem != "cifar" or len(arch.layers) != 3 or len(set(arch.layers)) != 1 or rest or k < 2:
        return []
    return [(f"wresnet{6 * arch.layers[0] + 2}", {"width": k})]


register_model(wide_info(20))
register_family("wide", r"wresnet(\\d+)", lambda m: wide_info(int(m.group(1))), layouts=layouts)
'''

#: A reproduction experiment: the wide net against ResNet-20, with its own option and its own report.
WIDE_EXPERIMENT = '''
"""``resnet reproduce wide-vs-narrow``: a wide ResNet-20 against section 4.2's ResNet-20 (not in the paper)."""
from pathlib import Path

from resnet.analysis.report import markdown_table, read_run
from resnet.config import load_config, shortened_schedule
from resnet.experiments.registry import Option, Options, experiment
from resnet.experiments.runner import RunSpec, train_runs
from resnet.io import atomic_write_text


@experiment(
    "wide-vs-narrow",
    help="a wide ResNet-20 against ResNet-20 on CIFAR-10",
    out="experiments/wide",
    options=(Option("--width", "width multiplier of the wide net", 2),),
)
def wide_vs_narrow(opts: Options) -> Path:
    base = [f"data.data_dir={opts.data_dir}"] if opts.data_dir else []
    if opts.iterations:
        scaled = shortened_schedule(load_config("cifar10/resnet20"), opts.iterations)
        base += [f"{k}={v}" for k, v in scaled.items()]
    nets = {"resnet20": [], f"wresnet20-x{opts.extra['width']}": ["model.name=wresnet20",
                                                                 f"model.kwargs.width={opts.extra['width']}"]}
    specs = [RunSpec(name, "cifar10/resnet20", opts.out / "runs" / name, (*base, *extra, *opts.sets))
             for name, extra in nets.items()]
    if not opts.report_only:
        train_runs(specs, jobs=opts.jobs)
    runs = [read_run(s.name, s.out) for s in specs]
    rows = [[r.name, r.iteration, f"{r.summary.get('test_error', float('nan')):.2f}"] for r in runs]
    report = opts.out / "wide-vs-narrow" / "REPORT.md"
    atomic_write_text(report, "# Wide vs narrow\\n\\n" + markdown_table(["net", "iterations", "test error %"], rows))
    return report
'''

#: An in-memory dataset: coloured noise, four classes named by colour, 3x16x16.
BLOBS = '''
"""Coloured blobs: a tiny in-memory dataset for trying a recipe in seconds."""
import numpy as np

from resnet.data.datasets import Dataset, register_dataset

CLASSES = ("red", "green", "blue", "grey")
COLOURS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [128, 128, 128]], dtype=np.float64)


def read(cfg):
    rng = np.random.default_rng(0)
    y = rng.integers(0, len(CLASSES), 600).astype(np.int64)
    x = np.clip(COLOURS[y][:, :, None, None] + rng.normal(0, 30, (600, 3, 16, 16)), 0, 255).astype(np.uint8)
    return x[:500], y[:500], x[500:], y[500:], list(CLASSES)


register_dataset(Dataset("blobs", read, (3, 16, 16), CLASSES))
'''

#: A 16x16 net whose entry names no preprocessing, and the dataset (with its own preset) its entry names; a
#: twin entry naming ImageNet's preset, which comes first.
BLOB_NET = '''
"""ResNet-8 for 16x16 blobs: the preprocessing is the dataset's to say."""
import dataclasses

from resnet.data.datasets import Dataset, register_dataset, register_preprocessing
from resnet.models.registry import model_info, register_model

register_preprocessing("blobs", (0.4, 0.45, 0.5), (0.2, 0.25, 0.3))
register_dataset(Dataset("blobs16", lambda cfg: None, (3, 16, 16), ("red", "green", "blue", "grey"),
                         preprocessing="blobs"))
entry = dataclasses.replace(model_info("resnet8"), name="blobnet8", family="blobs", input_size=(3, 16, 16),
                            preprocessing=None, dataset="blobs16", num_classes=4, paper="")
register_model(entry)
register_model(dataclasses.replace(entry, name="blobnet8i", preprocessing="imagenet"))
'''

PAPER_MARKS = ("Table 6", "Table 1", "0.27M", "269,722", "8.75")


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Writes extension files and lists them in RESNET_PLUGINS; every registry is restored afterwards."""
    from resnet import config
    from resnet import plugins as loader
    from resnet.data import datasets
    from resnet.experiments import registry as experiments
    from resnet.models import registry as models

    models.list_models()  # the built-in registry is complete before the snapshot
    experiments.discover()
    live = (models._REGISTRY, models._FAMILIES, experiments.EXPERIMENTS, loader._loaded, datasets.DATASETS,
            datasets.FOLDER_DATASETS, datasets.PREPROCESSING)  # fmt: skip
    saved = [(d, dict(d)) for d in live]
    kinds = list(config.DATASET_KINDS)

    def install(**sources: str) -> list[Path]:
        files = [tmp_path / f"{name}.py" for name in sources]
        for path, text in zip(files, sources.values(), strict=True):
            path.write_text(text)
        monkeypatch.setenv("RESNET_PLUGINS", ",".join(map(str, files)))
        return files

    yield install
    for d, copy in saved:
        d.clear()
        d.update(copy)
    config.DATASET_KINDS[:] = kinds
    for name in [m for m in sys.modules if m.startswith("resnet_plugin_")]:
        sys.modules.pop(name, None)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def test_a_new_family_and_experiment_work_with_every_command(
    plugins, cifar_subset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    plugins(wide_family=WIDE_FAMILY, wide_experiment=WIDE_EXPERIMENT)
    # resnet models: the family is listed with its own layout and no paper figure
    line = _run(["models", "wresnet*"], capsys).splitlines()[-1]
    assert line.split()[:3] == ["wresnet20", "wide", "32x32"] and "1,073,962" in line
    assert not any(mark in line for mark in PAPER_MARKS)
    assert main(["models", "resnet20"]) == 0 and "Table 6" in capsys.readouterr().out  # the paper's net keeps it

    # train with the family's own keyword from the recipe overrides
    run = tmp_path / "run"
    sets = ["model.name=wresnet20", "model.kwargs.width=2", "train.batch_size=16", "train.eval_every=4"]
    argv = ["train", "cifar10/resnet20", "--data-dir", str(cifar_subset), "--iterations", "4", "--out", str(run)]
    _run([*argv, "--device", "cpu", *(a for s in sets for a in ("--set", s))], capsys)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["model_name"] == "wresnet20" and ckpt["model_kwargs"]["width"] == 2

    out = _run(["eval", str(run), "--limit", "200"], capsys)
    assert "wresnet20 at iteration 4" in out and not any(mark in out for mark in PAPER_MARKS)

    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(image)
    top = json.loads(_run(["predict", str(image), "--checkpoint", str(run), "--json", "--topk", "2"], capsys))
    (pred,) = top["predictions"]
    assert top["model"] == "wresnet20" and len(pred["top"]) == 2
    assert {p["class"] for p in pred["top"]} <= {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                 "horse", "ship", "truck"}  # fmt: skip

    # convert: our checkpoint, and bare weights named from their shapes alone (width read from the tensors)
    _run(["convert", str(run), "--to", str(tmp_path / "w.pt")], capsys)
    bare = tmp_path / "bare.pt"
    torch.save(torch.load(run / "checkpoint.pt", weights_only=True)["model"], bare)
    _run(["convert", str(bare), "--to", str(tmp_path / "named.pt")], capsys)
    named = torch.load(tmp_path / "named.pt", weights_only=True)
    assert named["model_name"] == "wresnet20" and named["model_kwargs"]["width"] == 2

    _run(["export", "--checkpoint", str(tmp_path / "named.pt"), "--format", "torchscript"], capsys)
    assert torch.jit.load(tmp_path / "named.torchscript.pt")(torch.zeros(1, 3, 32, 32)).shape == (1, 10)

    # reproduce: the experiment registered by the outside file, with its own option
    assert "wide-vs-narrow" in _help(["reproduce", "--help"], capsys)
    args = ["reproduce", "wide-vs-narrow", "--data-dir", str(cifar_subset), "--iterations", "2", "--width", "3"]
    out = _run([*args, "--out", str(tmp_path / "exp"), "--set", "train.batch_size=8", "--device", "cpu"], capsys)
    assert "| wresnet20-x3 | 2 |" in out and not any(mark in out for mark in PAPER_MARKS)
    assert main(["reproduce", "table1", "--width", "3"]) == 2
    assert "--width is not an option of table1" in capsys.readouterr().err


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main(argv)
    return capsys.readouterr().out


def test_a_new_in_memory_dataset_trains_evaluates_and_names_its_classes(plugins, tmp_path: Path, capsys):
    plugins(blobs=BLOBS)
    run = tmp_path / "run"
    sets = ["data.dataset=blobs", "model.name=resnet8", "train.batch_size=32", "train.eval_every=20", "data.pad=2"]
    argv = ["train", "cifar10/resnet20", "--iterations", "20", "--device", "cpu", "--out", str(run)]
    _run([*argv, *(a for s in sets for a in ("--set", s))], capsys)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["dataset"] == "blobs" and ckpt["classes"] == ["red", "green", "blue", "grey"]
    assert ckpt["input_size"] == [3, 16, 16]

    out = _run(["eval", str(run)], capsys)
    assert "test split (100 images)" in out and "grey" in out

    image = tmp_path / "red.png"
    Image.new("RGB", (16, 16), (200, 40, 40)).save(image)
    top = json.loads(_run(["predict", str(image), "--checkpoint", str(run), "--json", "--topk", "4"], capsys))
    assert sorted(p["class"] for p in top["predictions"][0]["top"]) == ["blue", "green", "grey", "red"]

    _run(["convert", str(run), "--to", str(tmp_path / "blobs.pt")], capsys)
    assert torch.load(tmp_path / "blobs.pt", weights_only=True)["dataset"] == "blobs"
    assert main(["train", "cifar10/resnet20", "--set", "data.dataset=blobz", "--print-config"]) == 2
    assert "choose one of cifar10, cifar100, digits, synthetic, imagefolder, blobs" in capsys.readouterr().err


def test_a_plugin_that_fails_to_load_stops_the_command_in_one_line(tmp_path: Path, monkeypatch, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('boom')\n")
    monkeypatch.setenv("RESNET_PLUGINS", str(bad))
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert f"plugin '{bad}' failed to load (RuntimeError: boom)" in err and "Traceback" not in err
    monkeypatch.setenv("RESNET_PLUGINS", f"{tmp_path / 'missing.py'}, no_such_module_here")
    assert main(["models"]) == 2 and "no such file" in capsys.readouterr().err
    monkeypatch.setenv("RESNET_PLUGINS", "no_such_module_here")
    assert main(["models"]) == 2 and "ModuleNotFoundError" in capsys.readouterr().err
    assert "resnet_plugin_bad" not in sys.modules


#: A new block type: three 3x3 convs per block, with the base block's shortcuts (options A/B/C).
TRIPLE_BLOCK = """
import torch.nn.functional as F
from torch import nn

from resnet.models.blocks import BasicBlock, conv3x3, register_block
from resnet.models.cost import conv_bn


class TripleBlock(BasicBlock):
    def __init__(self, in_planes, planes, stride=1, *, residual=True, shortcut="B"):
        super().__init__(in_planes, planes, stride, residual=residual, shortcut=shortcut)
        self.conv3, self.bn3 = conv3x3(planes, planes), nn.BatchNorm2d(planes)

    def branch(self, x):
        return self.bn3(self.conv3(F.relu(super().branch(x))))

    def last_bn(self):
        return self.bn3


def triple_cost(arch, c_in, planes, stride, hw):
    first, mid = conv_bn(c_in, planes, 3, stride, hw)
    return first + conv_bn(planes, planes, 3, 1, mid)[0] + conv_bn(planes, planes, 3, 1, mid)[0], planes


register_block("triple", TripleBlock, triple_cost)
"""


@pytest.mark.parametrize("shortcut", ["A", "B", "C"])
def test_a_new_block_type_is_built_and_counted_from_one_file(plugins, shortcut: str):
    from resnet.models.arch import BLOCK_EXPANSION, Architecture
    from resnet.models.blocks import BLOCK_MODULES
    from resnet.models.complexity import count_macs, count_params
    from resnet.models.cost import BRANCH_COSTS, architecture_cost
    from resnet.models.network import ResNet
    from resnet.plugins import load_plugins

    plugins(triple_block=TRIPLE_BLOCK)
    try:
        load_plugins()
        arch = Architecture("triple", (2, 1, 1), (16, 32, 64), "cifar", shortcut=shortcut, num_classes=7)
        net = ResNet.from_architecture(arch, zero_init_residual=True)
        cost = architecture_cost(arch, (32, 32))
        assert (count_params(net), count_macs(net, (3, 32, 32))) == (cost.params, cost.macs)
        assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
        assert type(net.layer1[0]).__name__ == "TripleBlock" and not net.layer1[0].bn3.weight.any()
    finally:
        for table in (BLOCK_MODULES, BLOCK_EXPANSION, BRANCH_COSTS):
            table.pop("triple", None)


def test_an_entry_states_its_own_preprocessing_and_input_size(plugins):
    import dataclasses

    from resnet.errors import UserError
    from resnet.interop.convert import default_meta
    from resnet.models.registry import model_info, register_model

    base = model_info("resnet20")
    stats = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    register_model(dataclasses.replace(base, name="mine20", preprocessing=stats, input_size=(3, 24, 24)))
    meta, note = default_meta("mine20", {})
    assert meta["preprocessing"]["std"].flatten().tolist() == [0.25] * 3 and meta["input_size"] == [3, 24, 24]
    assert "mine20's per-channel mean/std" in note
    register_model(dataclasses.replace(base, name="odd20", preprocessing="odd"))
    with pytest.raises(UserError, match="preprocessing 'odd'; presets: imagenet, cifar10"):
        default_meta("odd20", {})


def test_bare_weights_of_an_entry_naming_no_preprocessing_get_its_datasets_preset(
    plugins, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from resnet.models import build_network
    from resnet.plugins import load_plugins

    plugins(blob_net=BLOB_NET)
    load_plugins()
    recorded = {}
    for name in ("blobnet8", "blobnet8i"):
        bare = tmp_path / f"{name}.pth"
        torch.save(build_network(name, num_classes=4).state_dict(), bare)
        out = _run(["convert", str(bare), "--model", name, "--to", str(tmp_path / f"{name}.pt")], capsys)
        ckpt = torch.load(tmp_path / f"{name}.pt", weights_only=True)
        assert ckpt["classes"] == ["red", "green", "blue", "grey"] and ckpt["input_size"] == [3, 16, 16]
        recorded[name] = (ckpt["preprocessing"]["mean"].flatten().tolist(), out)
    mean, note = recorded["blobnet8"]
    assert mean == pytest.approx([0.4, 0.45, 0.5]) and "the blobs per-channel mean/std" in note
    mean, note = recorded["blobnet8i"]  # the entry's own preset comes first
    assert mean == pytest.approx([0.485, 0.456, 0.406]) and "the imagenet per-channel mean/std" in note
