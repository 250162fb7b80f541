"""Hugging Face's model interface: model.save_pretrained / PretrainedResNet.from_pretrained / push_to_hub and the
model card, on local folders only (no network: HF_HUB_OFFLINE=1, and the one upload is to a stand-in HfApi)."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import resnet
from resnet.errors import UserError
from resnet.interop import hub
from resnet.interop.hub import PretrainedResNet
from resnet.interop.model_card import CARD_MARKER

from conftest import HANG, ROOT


@pytest.fixture(scope="module")
def tuned() -> PretrainedResNet:
    torch.manual_seed(0)
    model = resnet.create_model("resnet20", num_classes=10)
    with torch.no_grad():  # non-default BN statistics, so that a lost buffer shows
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_method_round_trip_writes_a_model_card(tuned, tmp_path: Path):
    assert tuned.save_pretrained(tmp_path / "m", model_card_kwargs={"metrics": {"test error": "8.1%"}}) is None
    written = sorted(p.name for p in (tmp_path / "m").iterdir() if not p.name.startswith("."))
    assert written == ["README.md", "config.json", "model.safetensors"]  # beside the output rule's record
    back = PretrainedResNet.from_pretrained(tmp_path / "m")
    assert isinstance(back, PretrainedResNet) and not back.training
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(x), tuned(x), rtol=0, atol=0)
    assert back.pretrained_cfg == tuned.pretrained_cfg
    card = (tmp_path / "m/README.md").read_text()
    assert card.startswith("---\nlibrary_name: resnet-paper\n")  # the Hub reads the YAML block at the very top
    for fact in (
        "# resnet20",
        "`resnet.create_model('resnet20', num_classes=10)`",
        "3 x 32 x 32",
        "mean [0.4914, 0.4822, 0.4465]",  # CIFAR-10's statistics, what a fresh CIFAR net is described with
        "10 classes (cifar10): airplane, automobile",
        "- test error: 8.1% (measured on these weights)",
        "8.75% CIFAR-10 test error (Table 6)",
        "@inproceedings{he2016deep",
        "doi       = {10.1109/CVPR.2016.90}",
    ):
        assert fact in card, fact
    # the module functions are the same thing
    resnet.save_pretrained(back, tmp_path / "f")
    assert (tmp_path / "f/config.json").read_bytes() == (tmp_path / "m/config.json").read_bytes()
    assert resnet.from_pretrained(tmp_path / "f").pretrained_cfg == tuned.pretrained_cfg


def test_a_card_the_user_wrote_is_kept_ours_is_refreshed(tuned, tmp_path: Path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "README.md").write_text("# my own card\n")
    tuned.save_pretrained(out)
    assert (out / "README.md").read_text() == "# my own card\n"
    (out / "README.md").unlink()
    tuned.save_pretrained(out)
    assert CARD_MARKER in (out / "README.md").read_text() and "measured" not in (out / "README.md").read_text()
    tuned.save_pretrained(out, model_card_kwargs={"metrics": {"top-1": "91%"}})  # our own card: rewritten
    assert "- top-1: 91% (measured on these weights)" in (out / "README.md").read_text()
    with pytest.raises(UserError, match="model_card_kwargs takes 'metrics' only"):
        tuned.save_pretrained(out, model_card_kwargs={"license": "apache-2.0"})
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file; save_pretrained writes a folder"):
        tuned.save_pretrained(tmp_path / "file")


def test_a_reset_classifier_saves_with_its_new_class_count(tmp_path: Path):
    model = resnet.create_model("resnet8")
    model.reset_classifier(3)
    model.save_pretrained(tmp_path / "m")
    back = resnet.from_pretrained(tmp_path / "m")
    assert back.fc.out_features == 3 and back.pretrained_cfg["model_kwargs"]["num_classes"] == 3
    assert "3 classes (unknown)" in (tmp_path / "m/README.md").read_text()
    model.reset_classifier(0)
    with pytest.raises(UserError, match="needs a classifier"):
        model.save_pretrained(tmp_path / "none")


def test_imagenet_card_names_the_resize_and_table3(tmp_path: Path):
    resnet.create_model("resnet50").save_pretrained(tmp_path / "r50")
    card = (tmp_path / "r50/README.md").read_text()
    assert "shorter side to 256" in card and "centre crop of 224 x 224" in card
    assert "22.85% top-1 / 6.71% top-5 ImageNet val error, 10-crop testing (Table 3)" in card
    assert "- imagenet-1k" in card


huggingface_hub = pytest.importorskip("huggingface_hub", reason="the [hub] extra is not installed")


def test_the_class_is_a_hub_mixin_and_its_card_reads_back(tuned, tmp_path: Path):
    assert isinstance(tuned, huggingface_hub.ModelHubMixin)
    tuned.save_pretrained(tmp_path / "m")
    card = huggingface_hub.ModelCard.load(tmp_path / "m/README.md")
    assert card.data.library_name == "resnet-paper" and card.data.license == "mit"
    assert card.data.pipeline_tag == "image-classification" and card.data.datasets == ["cifar10"]


def test_a_hub_id_offline_fails_in_one_line(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match="someone/resnet20: not a local folder, and the Hugging Face Hub did not") as e:
        PretrainedResNet.from_pretrained("someone/resnet20")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="someone/resnet20: not a local folder"):
        resnet.from_pretrained("someone/resnet20")


def test_push_to_hub_uploads_the_saved_folder(tuned, monkeypatch: pytest.MonkeyPatch):
    """The mixin's push_to_hub saves through our save_pretrained into a temporary folder and uploads that."""
    seen: dict[str, object] = {}

    class StandInApi:  # records instead of calling the Hub
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kwargs):
            return type("Repo", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, **kwargs):
            ignored = kwargs.get("ignore_patterns") or []
            files = {
                p.name: p.read_bytes()
                for p in Path(folder_path).iterdir()
                if not any(fnmatch.fnmatch(p.name, pattern) for pattern in ignored)
            }
            seen.update(repo_id=repo_id, files=files)
            return "https://huggingface.co/me/r20/commit/0"

    monkeypatch.setattr(huggingface_hub.hub_mixin, "HfApi", StandInApi)
    assert tuned.push_to_hub("me/r20") == "https://huggingface.co/me/r20/commit/0"
    assert seen["repo_id"] == "me/r20"
    files = seen["files"]
    assert sorted(files) == ["README.md", "config.json", "model.safetensors"]  # type: ignore[arg-type]
    assert json.loads(files["config.json"])["model_name"] == "resnet20"  # type: ignore[index]


def test_without_the_extra_folders_still_work_and_hub_ids_say_what_to_install(tmp_path: Path):
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["huggingface_hub"] = None  # as if not installed
        import torch, resnet
        from resnet.errors import UserError
        from resnet.interop.hub import PretrainedResNet
        m = resnet.create_model("resnet8").eval()
        m.save_pretrained({str(tmp_path / "m")!r})
        back = PretrainedResNet.from_pretrained({str(tmp_path / "m")!r})
        x = torch.randn(2, 3, 32, 32)
        assert torch.equal(back(x), m(x))
        for call in (lambda: resnet.from_pretrained("someone/r8"), lambda: m.push_to_hub("me/r8")):
            try:
                call()
            except UserError as e:
                print(e)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=HANG)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines == [
        "someone/r8: no such folder; loading a Hugging Face Hub id needs huggingface_hub: "
        "pip install 'resnet-paper[hub]'",
        "push_to_hub needs huggingface_hub: pip install 'resnet-paper[hub]'",
    ]
    assert hub.HUB_EXTRA == "pip install 'resnet-paper[hub]'"
