"""Counting from the architecture alone: equal to the built modules' counts, free of torch, no forward pass."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import resnet
from resnet.models import build_network, list_models, model_architecture, model_info
from resnet.models.arch import Architecture, cifar_architecture, imagenet_architecture
from resnet.models.complexity import count_macs, count_params, meta_instance
from resnet.models.cost import architecture_cost, conv_out
from resnet.models.registry import _REGISTRY, ModelInfo, register_model

ALL = list_models()


def options(name: str) -> list[dict]:
    """Every keyword variant that changes a net's layers: shortcut options, stride placement, in/out sizes."""
    info = model_info(name)
    variants: list[dict] = [{}, {"num_classes": 7, "in_channels": 1}]
    if "shortcut" in info.kwargs:
        variants += [{"shortcut": s} for s in ("A", "B", "C")]
    if "bottleneck_stride" in info.kwargs:
        variants += [{"bottleneck_stride": "3x3"}]
        if "shortcut" in info.kwargs:
            variants += [{"bottleneck_stride": "3x3", "shortcut": "C"}]
    return variants


CASES = [(n, kw) for n in ALL if n != "resnet1202" for kw in options(n)] + [("resnet1202", {}), ("plain38", {})]


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=lambda v: str(v))
def test_architecture_counts_equal_the_built_modules(name: str, kwargs: dict):
    """The analytic count and hooks on the real modules (meta device) agree exactly, at the native size."""
    info = model_info(name)
    model = meta_instance(name, **kwargs)
    cost = architecture_cost(model_architecture(name, **kwargs), info.input_size[1:])
    shape = (kwargs.get("in_channels", 3), *info.input_size[1:])
    assert (cost.params, cost.macs) == (count_params(model), count_macs(model, shape))


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "plain34", "resnet20", "resnet110"])
@pytest.mark.parametrize("hw", [(33, 47), (64, 64), (97, 35), (225, 223)])
def test_architecture_counts_at_other_input_sizes(name: str, hw: tuple[int, int]):
    """Odd sizes exercise every floor in the map-size arithmetic (stride-2 convs, the max pool)."""
    for kwargs in options(name):
        model = meta_instance(name, **kwargs)
        cost = architecture_cost(model_architecture(name, **kwargs), hw)
        assert cost.macs == count_macs(model, (kwargs.get("in_channels", 3), *hw)), kwargs
        assert cost.params == count_params(model)


def test_pinned_figures_from_the_architecture():
    # The same numbers tests/test_models.py pins on built modules (Table 1 v1 / v1.5, section 4.2).
    assert architecture_cost(imagenet_architecture(50), (224, 224)).macs == 3_857_973_248
    assert architecture_cost(imagenet_architecture(50, bottleneck_stride="3x3"), (224, 224)).macs == 4_089_184_256
    assert architecture_cost(imagenet_architecture(152), (224, 224)).params == 60_192_808
    assert architecture_cost(cifar_architecture(20), (32, 32)).params == 269_722
    assert architecture_cost(cifar_architecture(56), (32, 32)).macs == 125_485_696
    # Plain twins cost exactly what option-A nets cost (section 3.3 / 4.2).
    assert architecture_cost(cifar_architecture(56, False), (32, 32)) == architecture_cost(
        cifar_architecture(56), (32, 32)
    )


def test_built_nets_follow_their_architecture():
    model = build_network("resnet50", bottleneck_stride="3x3", shortcut="C", num_classes=5)
    arch = model_architecture("resnet50", bottleneck_stride="3x3", shortcut="C", num_classes=5)
    assert [len(s) for s in model.stages] == list(arch.layers) == [3, 4, 6, 3]
    assert model.fc.out_features == 5 and model.num_features == arch.num_features == 2048
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].conv1.stride == (1, 1)
    # zero_init_residual is an initialisation, not a layer: accepted, and the architecture is the same.
    assert model_architecture("resnet20", zero_init_residual=True) == model_architecture("resnet20")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: cifar_architecture(40), "6n+2"),
        (lambda: imagenet_architecture(42), "one of 18, 34, 50, 101, 152"),
        (lambda: cifar_architecture(20, shortcut="D"), "choose one of A, B, C"),
        (lambda: imagenet_architecture(50, bottleneck_stride="2x2"), "choose one of 1x1, 3x3"),
        (lambda: Architecture("wide", (1,), (8,), "cifar"), "choose one of basic, bottleneck"),
        (lambda: Architecture("basic", (1, 1), (8,), "cifar"), "differ in length"),
        (lambda: Architecture("basic", (1,), (8,), "vgg"), "'imagenet' or 'cifar'"),
        (lambda: Architecture("basic", (1,), (8,), "cifar", num_classes=0), "must be positive"),
        (lambda: model_architecture("resnet20", bottleneck_stride="3x3"), "valid keywords"),
        (lambda: architecture_cost(imagenet_architecture(18), (0, 5)), "cannot slide over a map of"),
    ],
)
def test_bad_architectures_say_what_is_wrong(make, message: str):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_conv_out_is_pytorch_s_floor_rule():
    assert conv_out(224, 7, 2, 3) == 112 and conv_out(112, 3, 2, 1) == 56 and conv_out(7, 1, 2) == 4
    assert conv_out(1, 3, 1, 1) == 1


@pytest.fixture
def custom_model():
    """A model registered the way a user would, without an architecture; removed again afterwards."""
    info = register_model(
        ModelInfo(
            name="tinynet",
            family="cifar",
            builder=lambda **kw: resnet.models.cifar_resnet(8, **kw),
            kwargs=("num_classes",),
            input_size=(3, 32, 32),
            depth=8,
            residual=True,
        )
    )
    yield info
    del _REGISTRY[info.name]


def test_zoo_counts_a_model_without_architecture_from_its_modules(custom_model: ModelInfo):
    from resnet.models.zoo import zoo_table

    line = zoo_table(["tinynet", "resnet8"]).splitlines()
    assert line[2].split()[3:] == line[3].split()[3:]  # same block, stages, shortcut, params, GMACs
    with pytest.raises(ValueError, match="already registered"):
        register_model(custom_model)


def test_builtin_names_cannot_be_taken_before_first_use():
    code = (
        "from resnet.models.registry import ModelInfo, register_model\n"
        "try:\n"
        "    register_model(ModelInfo('resnet20', 'cifar', print, (), (3, 32, 32), 20, True))\n"
        "except ValueError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'resnet20' is already registered" in out


@pytest.mark.parametrize(
    "argv", [["models"], ["models", "plain*"], ["reproduce", "table1", "--out", "OUT"], ["recipes"]]
)
def test_table_commands_do_not_import_torch(argv: list[str], tmp_path):
    argv = [str(tmp_path) if a == "OUT" else a for a in argv]
    code = (
        "import sys\nfrom resnet.cli import main\n"
        f"rc = main({argv!r})\n"
        "assert rc == 0, rc\n"
        "print('torch' in sys.modules, [m for m in sys.modules if m.startswith('torch')][:3])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "False []"


def test_every_experiment_registers_itself_and_listing_them_needs_no_torch():
    code = (
        "import sys\n"
        "from resnet.experiments.registry import discover\n"
        "found = discover()\n"
        "print(sorted(found), 'torch' in sys.modules, 'numpy' in sys.modules)\n"
        "print(sorted({e.run.__module__ for e in found.values()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    paper = ["cifar-fig6", "cifar-table6", "fig7", "imagenet-table2", "imagenet-table3", "table1"]
    assert out[0] == f"{paper} False False"
    modules = {"resnet.experiments.cifar", "resnet.experiments.imagenet", "resnet.experiments.table1"}
    assert out[1] == repr(sorted(modules))


def test_models_package_loads_names_lazily():
    import resnet.models as models

    assert models.build_network is build_network and "ResNet" in dir(models)
    with pytest.raises(AttributeError, match="now resnet.models.build_network"):  # the one create_model: resnet's
        models.create_model  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        models.nope  # noqa: B018


def test_option_a_cannot_remove_channels():
    with pytest.raises(ValueError, match=re.escape("option A cannot reduce channels (64 -> 16); use option B or C")):
        Architecture("basic", (1, 1), (16, 32), "imagenet", shortcut="A")
    Architecture("basic", (1, 1), (16, 32), "imagenet", shortcut="B")  # a projection can
    Architecture("basic", (1, 1), (16, 32), "imagenet", residual=False, shortcut="A")  # no shortcuts at all


def test_user_families_come_after_the_paper_s_and_first_use_is_thread_safe():
    code = (
        "import threading\n"
        "from resnet.models.registry import register_family, model_info, list_models\n"
        "from resnet.models.catalog import cifar_info\n"
        "import dataclasses\n"
        "mine = lambda m: dataclasses.replace(cifar_info(int(m.group(2)), True), doc='user family')\n"
        "register_family('mine', r'(resnet)(\\d+)', mine)\n"
        "assert model_info('resnet38').doc.startswith('CIFAR ResNet-38'), model_info('resnet38').doc\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    race = (
        "import sys, threading\n"
        "sys.setswitchinterval(1e-6)\n"
        "from resnet.models.registry import list_models, model_info\n"
        "seen = []\n"
        "def ask(): seen.append(len(list_models())); model_info('plain110')\n"
        "threads = [threading.Thread(target=ask) for _ in range(8)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "assert seen == [21] * 8, seen\n"
    )
    for _ in range(5):
        subprocess.run([sys.executable, "-c", race], check=True, capture_output=True)


def test_an_unknown_experiment_is_refused_without_torch_and_submodules_stay_reachable():
    code = (
        "import sys\nfrom resnet.cli import main\n"
        "assert main(['reproduce', 'tabel1']) == 2\n"
        "assert 'torch' not in sys.modules\n"
        "import resnet.models\n"
        "assert resnet.models.cifar.cifar_resnet and resnet.models.arch.check_cifar_depth(20) == 3\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "unknown experiment 'tabel1'; did you mean table1?" in res.stderr
