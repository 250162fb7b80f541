"""``resnet.evaluate`` and its core ``resnet.eval.evaluate.evaluate_model`` give ``resnet eval``'s numbers.

A converted akamaster-style ResNet-20 (seeded weights, random BN statistics) is evaluated on the real CIFAR-10
test images of the subset, through the library (a path, a model, a logits callable) and through the CLI.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

import resnet
from resnet.cli import main
from resnet.config import DataConfig
from resnet.data.datasets import load_dataset
from resnet.errors import UserError
from resnet.eval.evaluate import EvalProtocol, EvalReport, evaluate_model
from resnet.interop.evaluate import format_eval
from test_akamaster import save_their_file, their_net


@pytest.fixture(scope="module")
def r20(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("r20")
    src = save_their_file(their_net(20), tmp / "r20.th")
    assert main(["convert", str(src), "--to", str(tmp / "r20.pt"), "--from", "akamaster"]) == 0
    return tmp / "r20.pt"


def _cli_json(r20: Path, data: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    capsys.readouterr()
    assert main(["eval", str(r20), "--data-dir", str(data), "--device", "cpu", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_library_gives_the_clis_numbers_on_real_cifar(r20: Path, cifar_subset: Path, capsys) -> None:
    report = resnet.evaluate(r20, cifar_subset, device="cpu")
    assert isinstance(report, EvalReport)
    doc = _cli_json(r20, cifar_subset, capsys)
    assert report.images == doc["images"] == 1017  # the subset's test images
    assert report.top1_error == pytest.approx(doc["top1_error"], abs=1e-4)
    assert report.top5_error == pytest.approx(doc["top5_error"], abs=1e-4)
    assert report.loss == pytest.approx(doc["loss"], abs=1e-4)
    assert report.split_label == doc["split"] == "test" and report.protocol is None
    assert report.model == doc["model"] == "resnet20" and report.iteration is None
    per_class = report.per_class_error()
    assert list(per_class) == list(doc["per_class_error"]) and len(per_class) == 10
    for name, err in per_class.items():
        assert err == pytest.approx(doc["per_class_error"][name], abs=1e-4)
    # The table ``resnet eval`` prints is format_eval of the same report.
    assert main(["eval", str(r20), "--data-dir", str(cifar_subset), "--device", "cpu"]) == 0
    assert capsys.readouterr().out == format_eval(report) + "\n"
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.model = "other"  # type: ignore[misc]


def test_a_model_and_a_logits_callable_give_the_same_report(r20: Path, cifar_subset: Path) -> None:
    by_path = resnet.evaluate(r20, cifar_subset, device="cpu", limit=300)
    model = resnet.load(r20)
    by_model = resnet.evaluate(model, cifar_subset, device="cpu", limit=300)
    assert by_model.result == by_path.result and by_model.images == 300
    assert torch.equal(by_model.result.predictions, by_path.result.predictions)
    # The core takes any callable from a normalised batch to logits (an inference engine, a wrapped model).
    data = load_dataset(DataConfig(dataset="cifar10", data_dir=str(cifar_subset)))
    ckpt = model.checkpoint()

    def logits(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    core = evaluate_model(logits, data, ckpt.normalizer(), protocol=EvalProtocol(limit=300, batch_size=64))
    assert core.result.error == pytest.approx(by_path.result.error)
    assert core.result.loss == pytest.approx(by_path.result.loss, rel=1e-5)
    assert torch.equal(core.result.predictions, by_path.result.predictions)
    assert core.classes == by_path.classes and core.model == "model"


def test_bad_requests_fail_as_one_line(r20: Path, cifar_subset: Path) -> None:
    with pytest.raises(UserError, match="is for image folders"):
        resnet.evaluate(r20, cifar_subset, protocol="10crop", device="cpu")
    with pytest.raises(UserError, match="--limit must be at least 1"):
        resnet.evaluate(r20, cifar_subset, limit=0, device="cpu")
    with pytest.raises(UserError, match="unknown dataset"):
        resnet.evaluate(r20, cifar_subset, dataset="nope", device="cpu")
    with pytest.raises(UserError, match="carries no description"):
        resnet.evaluate(torch.nn.Linear(2, 2), cifar_subset, device="cpu")
    data = load_dataset(DataConfig(dataset="cifar10", data_dir=str(cifar_subset)))
    model = resnet.load(r20)
    with pytest.raises(UserError, match="unknown protocol"):
        evaluate_model(model, data, model.checkpoint().normalizer(), protocol=EvalProtocol(views="5crop"))


def test_no_error_rate_from_nan_logits(r20: Path, cifar_subset: Path) -> None:
    data = load_dataset(DataConfig(dataset="cifar10", data_dir=str(cifar_subset)))
    model = resnet.load(r20)

    def broken(x: torch.Tensor) -> torch.Tensor:
        return torch.full((len(x), 10), math.nan)

    with pytest.raises(UserError, match="NaN/Inf"):
        evaluate_model(broken, data, model.checkpoint().normalizer(), protocol=EvalProtocol(limit=10))


# Datasets as data: evaluation, reports and `convert --preprocessing` ask the description, not the name.


def test_a_folder_dataset_is_described_not_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from resnet.data import datasets

    assert datasets.is_folder_dataset("imagefolder") and datasets.is_folder_dataset("imagenet")
    assert not datasets.is_folder_dataset("cifar10") and not datasets.is_folder_dataset("digits")
    assert datasets.FOLDER_DATASETS["imagenet"].run_classes is False  # converted weights: sorted folder order
    assert datasets.FOLDER_DATASETS["imagefolder"].run_classes is True  # a run: its training folder's classes
    monkeypatch.setattr(datasets, "FOLDER_DATASETS", dict(datasets.FOLDER_DATASETS))
    datasets.register_folder_dataset(datasets.FolderDataset("places", run_classes=False, protocol="10crop"))
    assert datasets.is_folder_dataset("places") and datasets.reader_keys("places") == ("data_dir",)
    with pytest.raises(ValueError, match="already registered"):
        datasets.register_folder_dataset(datasets.FolderDataset("cifar10"))
    assert datasets.reader_keys("digits") == () and datasets.reader_keys("synthetic") == ("synthetic_size",)
    assert datasets.reader_keys("cifar10") == ("data_dir",) and datasets.reader_keys("nope") is None


def test_a_report_shows_the_settings_the_dataset_reads() -> None:
    from resnet.analysis.report import applicable_config
    from resnet.config import load_config

    def keys(dataset: str) -> set[str]:
        return set(applicable_config(load_config(None, [f"data.dataset={dataset}"]).to_dict()))

    assert "data.data_dir" in keys("cifar10") and "data.synthetic_size" not in keys("cifar10")
    assert "data.data_dir" not in keys("digits") and "data.crop" not in keys("digits")
    assert "data.synthetic_size" in keys("synthetic") and "data.data_dir" not in keys("synthetic")
    assert {"data.data_dir", "data.crop"} <= keys("imagefolder")


def test_a_registered_preprocessing_preset_is_accepted_by_convert(tmp_path: Path, monkeypatch, capsys) -> None:
    from resnet.data import datasets

    monkeypatch.setattr(datasets, "PREPROCESSING", dict(datasets.PREPROCESSING))
    monkeypatch.setattr("resnet.interop.stats.PRESETS", datasets.PREPROCESSING)
    datasets.register_preprocessing("grey", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    src = save_their_file(their_net(20), tmp_path / "r20.th")
    out = tmp_path / "r20.pt"
    assert main(["convert", str(src), "--to", str(out), "--from", "akamaster", "--preprocessing", "grey"]) == 0
    ckpt = resnet.load_checkpoint(out)
    torch.testing.assert_close(ckpt.preprocessing["mean"].flatten(), torch.full((3,), 0.5))
    capsys.readouterr()
    bad = ["convert", str(src), "--to", str(tmp_path / "x.pt"), "--from", "akamaster", "--preprocessing", "nope"]
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert "unknown --preprocessing 'nope'" in err and "grey" in err and "Traceback" not in err


def test_an_image_folder_run_gives_the_clis_numbers_under_each_protocol(tmp_path: Path, capsys) -> None:
    from resnet.config import load_config
    from resnet.train.loop import fit
    from test_imagefolder import folder_overrides

    from folders import build_folder

    photos = build_folder(tmp_path / "photos")
    overrides = folder_overrides(photos, **{"schedule.kind": "steps", "schedule.iterations": 2})
    fit(load_config(None, overrides), tmp_path / "run", echo=False)
    run = tmp_path / "run"
    results = {}
    for protocol in ("center", "10crop"):  # multiscale shares the path and costs minutes on two cores
        report = resnet.evaluate(run, protocol=protocol, workers=0, device="cpu")
        assert report.split == "val" and report.protocol == protocol and report.split_label == f"val, {protocol}"
        assert report.classes == ("china", "flower") and report.images == 6 and report.iteration == 2
        capsys.readouterr()
        assert main(["eval", str(run), "--protocol", protocol, "--workers", "0", "--device", "cpu", "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["split"] == report.split_label and doc["images"] == report.images
        assert report.top1_error == pytest.approx(doc["top1_error"], abs=1e-4)
        assert report.loss == pytest.approx(doc["loss"], abs=1e-4)
        results[protocol] = report.result
    default = resnet.evaluate(run, workers=0, device="cpu")  # the dataset's default views: the centre crop
    assert default.protocol is None and default.split_label == "val" and default.result == results["center"]
    with pytest.raises(UserError, match="image folders are not supported"):
        resnet.evaluate(run, recompute_bn=2, workers=0, device="cpu")
