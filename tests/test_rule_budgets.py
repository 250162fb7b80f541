"""The budget rule: sizes are checked before anything is allocated, wherever they come from (a flag, a
checkpoint, a safetensors header, config.json, an archive, a pickle, an ONNX graph).

The cases that would allocate gigabytes (or hang) without the rule run in one child process under an address
space limit and a timeout, so a regression fails here instead of exhausting the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from resnet.checkpoint import save_checkpoint
from resnet.cli import main
from resnet.data.cifar_pickle import read_pickle
from resnet.errors import UserError
from resnet.models.cost import MAX_ACTIVATIONS, MAX_PARAMS, architecture_size
from resnet.models.registry import model_architecture

from conftest import HANG

ROOT = Path(__file__).resolve().parents[1]


def test_every_paper_net_fits_the_budget_with_room_to_spare():
    for name, kwargs, hw in [
        ("resnet1202", {}, (32, 32)),
        ("resnet152", {}, (224, 224)),
        ("resnet152", {}, (640, 853)),  # the paper's largest test scale, a 4:3 image
        ("resnet50", {"shortcut": "C"}, (224, 224)),
    ]:
        size = architecture_size(model_architecture(name, **kwargs), hw)
        assert size.params * 4 < MAX_PARAMS and size.activations * 4 < MAX_ACTIVATIONS, (name, size)


def tiny_state() -> dict[str, torch.Tensor]:
    from resnet.models import build_network

    return build_network("resnet8").state_dict()


def huge_checkpoint(path: Path, name: str, **kwargs: object) -> Path:
    """A small file that describes a huge net: its tensors are resnet8's."""
    classes = int(kwargs.get("num_classes", 10))  # type: ignore[call-overload]
    save_checkpoint(
        path,
        {
            "model": tiny_state(),
            "model_name": name,
            "model_kwargs": kwargs,
            "preprocessing": {"kind": "channel_mean_std", "mean": torch.zeros(3, 1, 1), "std": torch.ones(3, 1, 1)},
            "classes": [str(i) for i in range(classes)],
            "input_size": [3, 32, 32] if name != "resnet152" else [3, 224, 224],
            "dataset": "unknown",
        },
    )
    return path


CHILD = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))  # fail fast instead of exhausting the machine
from resnet.cli import main
import resnet
results = {}
for name, argv in json.loads(sys.argv[1]).items():
    try:
        if argv[0] == "load":
            resnet.load(argv[1]); results[name] = "loaded"
        elif argv[0] == "create_model":
            resnet.create_model(argv[1], **json.loads(argv[2])); results[name] = "built"
        elif argv[0] == "from_pretrained":
            resnet.from_pretrained(argv[1]); results[name] = "loaded"
        else:
            results[name] = main(argv)
    except resnet.errors.UserError as e:
        results[name] = "refused: " + str(e)
    except BaseException as e:
        results[name] = "crashed: " + type(e).__name__
print("RESULTS " + json.dumps(results))
"""


def run_guarded(cases: dict[str, list[str]], tmp_path: Path) -> tuple[dict[str, object], str]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=HANG,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULTS ")), None)
    assert line is not None, proc.stderr[-2000:]
    return json.loads(line.removeprefix("RESULTS ")), proc.stderr


def test_huge_nets_from_any_source_are_refused_before_allocating(tmp_path: Path):
    st = pytest.importorskip("safetensors.torch")
    deep = huge_checkpoint(tmp_path / "deep.pt", "resnet600002")
    wide = huge_checkpoint(tmp_path / "wide.pt", "resnet152", num_classes=1_000_000)
    header = {
        "format": "resnet-safetensors/1",
        "metadata": json.dumps(
            {
                "model_name": "resnet600002",
                "classes": [str(i) for i in range(10)],
                "input_size": [3, 32, 32],
                "preprocessing": {"kind": "channel_mean_std", "mean": [0, 0, 0], "std": [1, 1, 1]},
            }
        ),
    }
    st.save_file(tiny_state(), str(tmp_path / "deep.safetensors"), metadata={**header})
    folder = tmp_path / "folder"
    folder.mkdir()
    st.save_file(tiny_state(), str(folder / "model.safetensors"), metadata={"format": "resnet-pretrained/1"})
    cfg = {"format": "resnet-pretrained/1", **json.loads(header["metadata"])}
    (folder / "config.json").write_text(json.dumps(cfg))
    png = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(png)
    cases = {
        "predict": ["predict", str(png), "--checkpoint", str(deep)],
        "eval": ["eval", str(deep), "--data-dir", str(tmp_path)],
        "convert": ["convert", str(deep), "--to", str(tmp_path / "o.pt")],
        "export": ["export", "--checkpoint", str(wide), "--out", str(tmp_path / "o.onnx")],
        "load": ["load", str(wide)],
        "safetensors": ["load", str(tmp_path / "deep.safetensors")],
        "config.json": ["from_pretrained", str(folder)],
        "create_model": ["create_model", "resnet600002", "{}"],
        "create_model_classes": ["create_model", "resnet152", '{"num_classes": 1000000}'],
        "summary": ["summary", "resnet600002"],
        "summary_classes": ["summary", "resnet152", "--num-classes", "1000000000"],
        "dry_run": ["train", "demo/digits", "--dry-run", "--set", "model.name=resnet600002", "--out", "r"],
    }
    results, stderr = run_guarded(cases, tmp_path)
    for name, result in results.items():
        assert result == 2 or str(result).startswith("refused"), (name, result, stderr[-1500:])
    assert "Traceback" not in stderr
    assert "9,721,578,074 parameters" in stderr and "2,107,143,808 parameters" in stderr  # the figure is said
    assert not (tmp_path / "o.pt").exists() and not (tmp_path / "r").exists()


def test_a_zip_bomb_checkpoint_is_refused_before_unpacking(tmp_path: Path, capsys):
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("bomb/data.pkl", "w", force_zip64=True) as f:
            chunk = bytes(2**20)
            for _ in range(64):  # 64 MiB of zeros: 64 KB on disk
                f.write(chunk)
    assert bomb.stat().st_size < 2**20
    assert main(["convert", str(bomb), "--to", str(tmp_path / "x.pt")]) == 2
    assert "unpacks to 67,108,864 bytes" in capsys.readouterr().err


def test_a_pickle_of_empty_sets_is_refused_as_it_unpickles(tmp_path: Path):
    import io

    blob = b"\x80\x04" + b"\x8f" * 20_000_000 + b"."  # 20 MB of EMPTY_SET: 4.7 GB of sets if unpickled
    with pytest.raises(UserError, match="more than 100,000 containers"):
        read_pickle(io.BytesIO(blob), "data_batch_1")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--seeds", ""], "--seeds takes comma-separated integers"),
        (["--seeds=-1,2"], "-1 is not a seed"),
        (["--seeds", ",".join(map(str, range(65)))], "--seeds 65: must be 1 to 64 seeds"),
        (["--set", "data.pad=1024"], "'data.pad' is 1024"),
        (["--set", "data.dataset=synthetic", "--set", "data.synthetic_size=100000000"], "1 to 500,000 images"),
    ],
)
def test_flags_that_size_the_work_are_refused_before_any_run(argv, words, tmp_path: Path, capsys):
    out = tmp_path / "run"
    assert main(["train", "demo/digits", "--iterations", "40", "--out", str(out), *argv]) == 2
    assert words in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written


def test_jobs_and_recompute_bn_are_checked(tmp_path: Path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--jobs", "1000"]) == 2
    assert "--jobs 1000: must be 1 to 64" in capsys.readouterr().err
    assert main(["reproduce", "cifar-fig6", "--out", str(tmp_path / "r"), "--seeds", "0"]) == 2
    assert "--seeds 0: must be 1 to 64" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--recompute-bn", "-1"]) == 2
    assert "--recompute-bn -1" in capsys.readouterr().err


def onnx_bomb(path: Path) -> Path:
    """658 bytes of graph that ask for 64 GiB: ConstantOfShape of [16, 1024, 1024, 1024] floats."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [16, 1024, 1024, 1024])
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"]),
        helper.make_node("ReduceMean", ["big"], ["m"], keepdims=0),
        helper.make_node("Add", ["input", "m"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        initializer=[shape],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def test_an_onnx_graph_asking_for_64_gib_is_refused_before_running(tmp_path: Path):
    pytest.importorskip("onnxruntime")
    from resnet.interop.onnx_files import checked_onnx_bytes

    path = onnx_bomb(tmp_path / "bomb.onnx")
    assert path.stat().st_size < 1000
    with pytest.raises(UserError, match="refused before running it"):
        checked_onnx_bytes(path)
