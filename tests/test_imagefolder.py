"""Image folders: the index and its cache, decoding, the paper's augmentation, statistics, test protocols."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from resnet.data import imagefolder
from resnet.data.augment import Lighting, scale_crop_flip
from resnet.data.folder_loader import FolderLoader
from resnet.data.folder_stats import estimate_stats
from resnet.data.imagefolder import open_splits, scan
from resnet.data.preprocess import Normalizer
from resnet.data.transforms import center_crop, load_image, resize_shorter, ten_crop
from resnet.errors import UserError
from resnet.eval.folders import folder_scores
from resnet.models import build_network

from folders import add_broken, add_odd_modes, build_folder


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("RESNET_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    return build_folder(tmp_path / "photos")


def test_index_sorted_classes_labels_and_extensions(folder: Path):
    train, val = open_splits(folder)
    assert train.classes == ["china", "flower"] and val is not None and val.classes == train.classes
    assert len(train) == 12 and len(val) == 6
    assert all(f.endswith((".JPG", ".png", ".jpeg")) for f in train.files)  # notes.txt is not an image
    assert train.labels == [0] * 6 + [1] * 6
    assert train.files == sorted(train.files)  # sorted within a class, classes in sorted order


def test_index_cache_is_used_and_invalidated_when_the_folder_changes(folder: Path, monkeypatch):
    first = scan(folder / "train")
    calls = []
    real_walk = imagefolder._walk
    monkeypatch.setattr(imagefolder, "_walk", lambda *a, **k: calls.append(a) or real_walk(*a, **k))
    again = scan(folder / "train")
    assert again.files == first.files and calls == []  # served from the cache: nothing walked
    time.sleep(0.01)
    (folder / "train" / "flower" / "new_one.png").write_bytes((folder / "train/flower/flower_001.png").read_bytes())
    changed = scan(folder / "train")
    assert calls and len(changed) == len(first) + 1 and "flower/new_one.png" in changed.files


def test_val_classes_must_exist_in_train(folder: Path):
    (folder / "val" / "zebra").mkdir()
    (folder / "val" / "zebra" / "z.png").write_bytes((folder / "val/china/china_001.png").read_bytes())
    with pytest.raises(UserError, match="class folders the training split lacks: zebra"):
        open_splits(folder)
    with pytest.raises(UserError, match="no image folder"):
        open_splits(folder / "val")


def test_odd_modes_decode_to_rgb(folder: Path):
    for path in add_odd_modes(folder / "train" / "flower"):
        img = load_image(path)
        assert img.dtype == torch.uint8 and img.shape == (3, 80, 100), path


def test_corrupt_files_are_skipped_counted_and_named(folder: Path, caplog, capfd):
    broken = add_broken(folder / "train" / "china")
    index = scan(folder / "train")
    norm = Normalizer("pixel_mean", torch.full((3, 32, 32), 0.5), torch.ones(3, 1, 1))
    loader = FolderLoader(index, 14, norm, None, torch.device("cpu"), workers=0, scale=(40, 48), size=32)
    x, y = loader.next()  # one epoch = the whole folder (14 files, 2 of them broken)
    assert len(y) == 12 and x.shape == (12, 3, 32, 32) and loader.skipped == 2
    err = caplog.text  # logged as warnings (the `resnet` command shows them on stderr)
    assert all(p.name in err for p in broken) and "2 unreadable files so far" in err
    assert capfd.readouterr() == ("", "")  # a library printing nothing itself (no logging configured here)
    strict = FolderLoader(index, 14, norm, None, torch.device("cpu"), workers=0, scale=(40, 48), size=32, strict=True)
    with pytest.raises(UserError, match="strict_decode"):
        strict.next()


@settings(max_examples=25, deadline=None)
@given(h=st.integers(20, 90), w=st.integers(20, 90), seed=st.integers(0, 10_000))
def test_scale_crop_flip_takes_a_window_of_the_rescaled_image(h: int, w: int, seed: int):
    img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    out = scale_crop_flip(img, torch.Generator().manual_seed(seed), (24, 40), 16)
    assert out.shape == (3, 16, 16)
    g = torch.Generator().manual_seed(seed)  # replay the draws
    s = int(torch.randint(24, 41, (1,), generator=g))
    scaled = resize_shorter(img, s)
    assert min(scaled.shape[-2:]) == s
    top = int(torch.randint(0, scaled.shape[-2] - 16 + 1, (1,), generator=g))
    left = int(torch.randint(0, scaled.shape[-1] - 16 + 1, (1,), generator=g))
    window = scaled[:, top : top + 16, left : left + 16]
    flipped = bool(torch.randint(0, 2, (1,), generator=g))
    assert torch.equal(out, window.flip(-1) if flipped else window)


def test_scale_range_and_flip_rate():
    img = torch.arange(3 * 30 * 40, dtype=torch.float32).reshape(3, 30, 40)
    scales, flips = [], 0
    for seed in range(400):
        g = torch.Generator().manual_seed(seed)
        s = int(torch.randint(256, 481, (1,), generator=g))  # the paper's range, first draw of scale_crop_flip
        scales.append(s)
        out = scale_crop_flip(img, torch.Generator().manual_seed(seed), (256, 480), 224)
        assert out.shape == (3, 224, 224)
        # Columns increase left to right in this image unless it was flipped.
        flips += int(out[0, 0, 0] > out[0, 0, -1])
    assert min(scales) >= 256 and max(scales) <= 480 and max(scales) - min(scales) > 180
    assert 160 < flips < 240  # about half of 400


def test_lighting_statistics_follow_the_pca():
    g = torch.Generator().manual_seed(0)
    mix = torch.tensor([[0.5, 0.4, 0.3], [0.0, 0.2, 0.1], [0.0, 0.0, 0.05]])
    pixels = torch.randn(200_000, 3, generator=g) @ mix
    light = Lighting.fit(pixels, std=0.1)
    cov = torch.cov(pixels.T.double())
    # eigvec columns are orthonormal and diagonalise the covariance; eigval are its eigenvalues (AlexNet's
    # lambda_i, variances), not their square roots.
    torch.testing.assert_close(light.eigvec.T @ light.eigvec, torch.eye(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        (light.eigvec.T.double() @ cov @ light.eigvec.double()).diagonal().float(),
        light.eigval,
        rtol=1e-4,
        atol=1e-6,
    )
    x = torch.zeros(20_000, 3, 1, 1)
    light(x, torch.Generator().manual_seed(1))
    shifts = x.flatten(1)
    expected = light.eigvec @ torch.diag((0.1 * light.eigval) ** 2) @ light.eigvec.T
    torch.testing.assert_close(torch.cov(shifts.T), expected, rtol=0.05, atol=1e-6)
    assert shifts.mean(dim=0).abs().max() < 0.002


def test_standard_lighting_has_alexnet_s_magnitude():
    """fb.resnet.torch: shift = eigvec @ (alpha * eigval), alpha ~ N(0, 0.1), eigval 0.2175, 0.0188, 0.0045."""
    light = Lighting.imagenet()
    x = torch.zeros(40_000, 3, 1, 1)
    light(x, torch.Generator().manual_seed(0))
    shifts = x.flatten(1).double()
    # Along each principal axis the per-image shift has std 0.1 * eigval (the old square-root convention gave
    # 0.047, 0.014, 0.0067: 2-15x more); summed over channels, sqrt(0.01 * sum eigval^2) = 0.0218.
    along = shifts @ light.eigvec.double()
    torch.testing.assert_close(along.std(dim=0), torch.tensor([0.02175, 0.00188, 0.00045]).double(), rtol=0.03, atol=0)
    assert shifts.square().sum(dim=1).mean().sqrt().item() == pytest.approx(0.02184, rel=0.02)


def test_lighting_state_of_the_old_square_root_convention_is_squared_back():
    light = Lighting.imagenet()
    new = Lighting.from_state_dict(light.state_dict())
    torch.testing.assert_close(new.eigval, light.eigval)
    old = {"eigval": light.eigval.sqrt(), "eigvec": light.eigvec, "std": 0.1}  # as earlier versions stored it
    torch.testing.assert_close(Lighting.from_state_dict(old).eigval, light.eigval)


def test_folder_runs_use_the_standard_axes_unless_asked_to_estimate(folder: Path):
    from resnet.config import load_config
    from resnet.data.sources import open_source

    base = ["data.dataset=imagefolder", f"data.data_dir={folder}", "data.crop=32", "data.scale_min=40",
            "data.scale_max=48", "data.eval_resize=40", "data.mean_samples=100", "data.workers=0"]  # fmt: skip
    cfg = load_config(None, base)
    _, light = open_source(cfg).preprocessing(cfg)
    torch.testing.assert_close(light.eigval, torch.tensor([0.2175, 0.0188, 0.0045]))
    cfg = load_config(None, [*base, "data.lighting_axes=estimated"])
    _, estimated = open_source(cfg).preprocessing(cfg)
    # variances of [0, 1] pixels: three channels hold at most 3 x 0.25 in all
    assert not torch.allclose(estimated.eigval, light.eigval) and 0 < estimated.eigval.sum() <= 0.75
    with pytest.raises(UserError, match="lighting_axes"):
        load_config(None, [*base, "data.lighting_axes=pca"])


def test_mean_image_is_the_mean_of_the_centre_views(folder: Path):
    index = scan(folder / "train")
    norm, light = estimate_stats(index, "pixel_mean", samples=100, resize=40, size=32, workers=0)
    views = [center_crop(resize_shorter(load_image(index.path(i)), 40), 32).double() / 255 for i in range(len(index))]
    torch.testing.assert_close(norm.mean.double(), torch.stack(views).mean(dim=0), rtol=1e-5, atol=1e-6)
    assert norm.mean.shape == (3, 32, 32) and light.eigval.shape == (3,)
    again, _ = estimate_stats(index, "pixel_mean", samples=100, resize=40, size=32, workers=0)  # from the cache
    torch.testing.assert_close(again.mean, norm.mean)


def test_loader_is_reproducible_across_workers_and_resumes_mid_epoch(folder: Path):
    index = scan(folder / "train")
    norm = Normalizer("pixel_mean", torch.full((3, 32, 32), 0.5), torch.ones(3, 1, 1))
    light = Lighting(torch.tensor([0.2, 0.05, 0.01]), torch.eye(3))

    def make(workers: int, **kw) -> FolderLoader:
        return FolderLoader(
            index, 4, norm, light, torch.device("cpu"), workers=workers, scale=(40, 48), size=32, seed=3, **kw
        )

    a = [make(0).next() for _ in range(1)]
    loader0, loader2 = make(0), make(2)
    seq0 = [loader0.next() for _ in range(5)]
    seq2 = [loader2.next() for _ in range(5)]
    assert a[0][0].shape == (4, 3, 32, 32)
    for (x0, y0), (x2, y2) in zip(seq0, seq2, strict=True):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    resumed = make(0)
    resumed.load_state_dict({**make(0).state_dict(), "epoch": 1, "step": 1})  # the 5th batch: epoch 1, step 1
    x, y = resumed.next()
    assert torch.equal(x, seq0[4][0]) and torch.equal(y, seq0[4][1])
    ranks = [make(0, rank=r, world_size=2) for r in range(2)]
    first = [r.next() for r in ranks]
    assert sorted(torch.cat([f[1] for f in first]).tolist()) == sorted(seq0[0][1].tolist())


def test_ten_crop_and_multiscale_scores_equal_a_crop_by_crop_reference(folder: Path):
    torch.manual_seed(0)
    model = build_network("resnet8", num_classes=2).eval()
    index = scan(folder / "val")
    norm = Normalizer("pixel_mean", torch.rand(3, 32, 32), torch.ones(3, 1, 1))
    for protocol in ("center", "10crop", "multiscale"):
        scores, labels, skipped = folder_scores(
            model, index, norm, protocol=protocol, resize=40, size=32, scales=(32, 48), workers=0
        )
        assert scores.shape == (6, 2) and labels.tolist() == index.labels and not skipped
        for i in range(len(index)):
            img = load_image(index.path(i))
            if protocol == "center":
                crops = [center_crop(resize_shorter(img, 40), 32)]
            elif protocol == "10crop":
                crops = list(ten_crop(resize_shorter(img, 40), 32))
            else:
                crops = [v for s in (32, 48) for v in (resize_shorter(img, s), resize_shorter(img, s).flip(-1))]
            with torch.no_grad():
                probs = [model(norm.at_size(*c.shape[-2:])(c[None])).softmax(1)[0] for c in crops]
            torch.testing.assert_close(scores[i], torch.stack(probs).mean(dim=0), rtol=1e-5, atol=1e-6)


def test_global_pooling_plus_fc_equals_averaging_the_fc_scores_over_positions():
    model = build_network("resnet20").eval()
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        fmap = model.forward_features(x)[-1]  # 2 x 64 x 12 x 16
        per_position = model.fc(fmap.permute(0, 2, 3, 1))  # scores at every position of the final map
        torch.testing.assert_close(model(x), per_position.mean(dim=(1, 2)), rtol=1e-5, atol=1e-5)


def folder_overrides(root: Path, **extra: object) -> list[str]:
    base = {
        "model.name": "resnet8",
        "data.dataset": "imagefolder",
        "data.data_dir": str(root),
        "data.val_fraction": 0.0,
        "data.scale_min": 36,
        "data.scale_max": 48,
        "data.crop": 32,
        "data.eval_resize": 36,
        "data.mean_samples": 50,
        "data.workers": 0,
        "schedule.kind": "plateau",
        "schedule.iterations": 6,
        "schedule.plateau_patience": 1,
        "schedule.plateau_min_delta": 100.0,  # no evaluation counts as an improvement
        "train.batch_size": 4,
        "train.log_every": 2,
        "train.eval_every": 2,
        "train.checkpoint_every": 3,
        "train.device": "cpu",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def test_training_on_an_image_folder_with_plateau_drops_then_eval_protocols(folder: Path, tmp_path: Path, capsys):
    from resnet.cli import main
    from resnet.config import load_config
    from resnet.rundir_format import read_metrics
    from resnet.train.loop import fit

    add_broken(folder / "train" / "flower")
    summary = fit(load_config(None, folder_overrides(folder)), tmp_path / "run", echo=False)
    assert summary["iterations"] == 6 and summary["data"] == {
        "dataset": "imagefolder",
        "train": 14,
        "val": 6,
        "test": 0,
    }
    assert summary["skipped_images"] >= 1  # the broken files were met, named, counted, and training went on
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    drops = [r["iteration"] for r in records if r.get("event") == "lr_drop"]
    # Evaluation at 2 sets the best, the one at 4 is a plateau (drop), the one at 6 measures the new level.
    assert drops == [4]
    train = [r for r in records if r.get("split") == "train"]
    assert [r["iteration"] for r in train] == [2, 3, 4, 6]  # logs every 2, and the window is flushed at checkpoint 3
    assert [r["lr"] for r in train] == pytest.approx([0.1, 0.1, 0.1, 0.01])
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["lighting"]["eigval"].shape == (3,) and ckpt["preprocessing"]["mean"].shape == (3, 32, 32)
    assert ckpt["classes"] == ["china", "flower"] and ckpt["input_size"] == [3, 32, 32]
    for protocol in ("center", "10crop", "multiscale"):
        assert main(["eval", str(tmp_path / "run"), "--protocol", protocol, "--workers", "0"]) == 0
        out = capsys.readouterr().out
        assert f"val, {protocol} split (6 images)" in out and "top-5 error" in out


def test_cached_statistics_honour_the_requested_lighting_strength(folder: Path):
    index = scan(folder / "train")
    _, first = estimate_stats(index, "pixel_mean", samples=100, resize=40, size=32, workers=0, lighting_std=0.1)
    _, second = estimate_stats(index, "pixel_mean", samples=100, resize=40, size=32, workers=0, lighting_std=0.5)
    assert first.std == 0.1 and second.std == 0.5
    torch.testing.assert_close(first.eigvec, second.eigvec)  # the axes come from the cache


def test_eval_of_a_run_whose_val_folder_lacks_a_class(folder: Path, tmp_path: Path, capsys):
    from resnet.cli import main
    from resnet.config import load_config
    from resnet.train.loop import fit

    extra = folder / "train" / "zz_extra"
    extra.mkdir()
    for p in sorted((folder / "train" / "china").iterdir())[:4]:
        (extra / p.name).write_bytes(p.read_bytes())
    fit(load_config(None, folder_overrides(folder, **{"schedule.kind": "steps"})), tmp_path / "run", echo=False)
    assert main(["eval", str(tmp_path / "run"), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "val split (6 images)" in out and "zz_extra            nan" in out  # 3 classes, one absent from val
