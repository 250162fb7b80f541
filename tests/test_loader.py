"""The device-resident loader: crops stay inside the padded image, flips mirror, order follows the seed."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from resnet.data.loader import DeviceLoader, crop_flip, eval_batches
from resnet.data.preprocess import Normalizer


def reference_crop(x: torch.Tensor, pad: int, oy: int, ox: int, flip: bool) -> torch.Tensor:
    """One image at a time, the obvious way."""
    c, h, w = x.shape
    padded = torch.zeros(c, h + 2 * pad, w + 2 * pad)
    padded[:, pad : pad + h, pad : pad + w] = x
    out = padded[:, oy : oy + h, ox : ox + w]
    return out.flip(-1) if flip else out


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 5),
    h=st.integers(2, 9),
    w=st.integers(2, 9),
    pad=st.integers(0, 4),
    seed=st.integers(0, 2**16),
)
def test_crop_flip_matches_a_per_image_reference(b: int, h: int, w: int, pad: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, h, w, generator=g)
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=g)
    flips = torch.randint(0, 2, (b,), generator=g).bool()
    out = crop_flip(x, pad, offsets, flips)
    assert out.shape == x.shape
    for i in range(b):
        ref = reference_crop(x[i], pad, int(offsets[i, 0]), int(offsets[i, 1]), bool(flips[i]))
        torch.testing.assert_close(out[i], ref)


def test_centre_offset_without_flip_is_the_identity_and_flip_twice_is_too():
    x = torch.randn(4, 3, 8, 8)
    centre = torch.full((4, 2), 4)
    torch.testing.assert_close(crop_flip(x, 4, centre, torch.zeros(4, dtype=torch.bool)), x)
    once = crop_flip(x, 4, centre, torch.ones(4, dtype=torch.bool))
    torch.testing.assert_close(once, x.flip(-1))
    torch.testing.assert_close(crop_flip(once, 4, centre, torch.ones(4, dtype=torch.bool)), x)


def make_loader(**kw) -> DeviceLoader:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (100, 3, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.arange(100)
    norm = Normalizer.fit("pixel_mean", images.numpy())
    return DeviceLoader(images, labels, kw.pop("batch_size", 16), norm, **kw)


def test_augmented_batches_stay_inside_the_padded_image_and_flip():
    loader = make_loader(pad=2, seed=3)
    norm = loader.normalizer
    seen_flip = seen_noflip = False
    for _ in range(loader.steps_per_epoch):
        x, y = loader.next()
        clean = norm(loader.images[y])  # labels are the image indices here
        for i in range(len(y)):
            matches = [
                (oy, ox, f)
                for oy in range(5)
                for ox in range(5)
                for f in (False, True)
                if torch.equal(x[i], reference_crop(clean[i], 2, oy, ox, f))
            ]
            assert matches, "a crop that is not a window of the padded image"
            # Only unambiguous cases count (a symmetric crop matches both ways).
            seen_flip |= all(f for *_, f in matches)
            seen_noflip |= all(not f for *_, f in matches)
    assert seen_flip and seen_noflip


def test_one_epoch_visits_each_image_at_most_once_and_drops_the_remainder():
    loader = make_loader(batch_size=16)
    assert loader.steps_per_epoch == 6
    ys = torch.cat([loader.next()[1] for _ in range(6)])
    assert len(ys) == 96 and len(set(ys.tolist())) == 96
    assert loader.state_dict()["epoch"] == 1 and loader.state_dict()["step"] == 0


def test_order_and_augmentation_follow_the_seed_and_resume_exactly():
    a, b, c = make_loader(seed=1), make_loader(seed=1), make_loader(seed=2)
    first_a = [a.next() for _ in range(9)]
    first_b = [b.next() for _ in range(9)]
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(first_a, first_b, strict=True))
    assert not torch.equal(c.next()[1], first_a[0][1])
    state = a.state_dict()
    rest_a = [a.next() for _ in range(5)]
    resumed = make_loader(seed=1)
    resumed.load_state_dict(state)
    rest_r = [resumed.next() for _ in range(5)]
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(rest_a, rest_r, strict=True))
    # A new epoch draws a new order.
    e0 = make_loader(seed=1)
    ep0 = [e0.next()[1] for _ in range(6)]
    ep1 = [e0.next()[1] for _ in range(6)]
    assert not all(torch.equal(p, q) for p, q in zip(ep0, ep1, strict=True))


def test_ranks_take_disjoint_slices_of_the_same_global_batch():
    single = make_loader(batch_size=16, seed=5)
    ranks = [make_loader(batch_size=16, seed=5, rank=r, world_size=2) for r in range(2)]
    for _ in range(8):
        x, y = single.next()
        parts = [r.next() for r in ranks]
        torch.testing.assert_close(torch.cat([p[0] for p in parts]), x)
        assert torch.equal(torch.cat([p[1] for p in parts]), y)


def test_no_flip_option_and_eval_batches_are_unaugmented():
    loader = make_loader(pad=0, flip=False)
    x, y = loader.next()
    torch.testing.assert_close(x, loader.normalizer(loader.images[y]))
    batches = list(eval_batches(loader.images, loader.labels, 30, loader.normalizer))
    assert [len(b[1]) for b in batches] == [30, 30, 30, 10]
    torch.testing.assert_close(batches[1][0], loader.normalizer(loader.images[30:60]))
