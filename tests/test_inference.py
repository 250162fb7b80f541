"""The inference fast path: BN folded into the convs gives the eval-mode outputs, for every kind of net."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from resnet.interop.inference import InferenceModel, fold_batchnorm, fold_conv_bn, optimize_for_inference
from resnet.models import build_network


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine terms, so that folding is exercised on every tensor."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model.eval()


CASES = [
    ("resnet20", {"shortcut": "A"}, 32),  # option A: zero-padding identity shortcuts
    ("resnet20", {"shortcut": "B"}, 32),
    ("resnet20", {"shortcut": "C"}, 32),
    ("plain20", {}, 32),
    ("resnet18", {}, 64),  # ImageNet stem, option B projections
    ("resnet50", {"bottleneck_stride": "3x3", "shortcut": "C"}, 32),
    ("plain50", {}, 32),
]


@pytest.mark.parametrize(("name", "kwargs", "size"), CASES, ids=[f"{n}-{k}" for n, k, _ in CASES])
def test_folded_model_matches_eval_outputs(name: str, kwargs: dict, size: int):
    torch.manual_seed(0)
    model = randomize_bn(build_network(name, **kwargs))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        ref = model(x)
        folded = fold_batchnorm(model)
        fast = optimize_for_inference(model)  # + channels_last
        assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
        torch.testing.assert_close(folded(x), ref, rtol=1e-4, atol=1e-4)
        out = fast(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert out.dtype == torch.float32
    # The original is untouched and still trainable.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_fold_conv_bn_with_an_existing_conv_bias():
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=True)
    bn = randomize_bn(nn.Sequential(nn.BatchNorm2d(6)))[0]
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(fold_conv_bn(conv, bn)(x), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_a_bn_that_follows_no_conv_is_refused_rather_than_dropped():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm2d(3))
    with pytest.raises(ValueError, match="do not follow a conv"):
        fold_batchnorm(model)


def test_inference_model_is_eval_only():
    fast = optimize_for_inference(build_network("resnet8"))
    assert isinstance(fast, InferenceModel) and not fast.training
    fast.eval()  # allowed
    with pytest.raises(RuntimeError, match="eval-only"):
        fast.train()
    assert not any(p.requires_grad for p in fast.parameters())


def test_bf16_path_runs_and_stays_close():
    # The GPU fast path's dtype, exercised on CPU: bf16 weights and activations, float32 logits out.
    torch.manual_seed(0)
    model = randomize_bn(build_network("resnet20"))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        out = optimize_for_inference(model, dtype=torch.bfloat16)(x)
    assert out.dtype == torch.float32
    assert next(optimize_for_inference(model, dtype=torch.bfloat16).parameters()).dtype == torch.bfloat16
    # bf16 keeps 8 bits of mantissa; over 20 layers the logits stay within a few percent of their scale.
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.75


@pytest.mark.slow  # ~10 s of inductor compilation on 2 CPU cores
def test_compiled_path_freezes_weights_and_matches():
    # torch.compile with inductor's freezing (CPU): weights become constants of the compiled graph.
    torch.manual_seed(0)
    model = randomize_bn(build_network("resnet8", in_channels=1))
    x = torch.randn(2, 1, 8, 8)
    compiled = optimize_for_inference(model, compile=True)
    assert compiled.freeze
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(compiled(x + 1), model(x + 1), rtol=1e-4, atol=1e-4)


def test_compiled_engine_pads_a_new_smaller_batch_and_compiles_for_a_repeated_one():
    from torch._dynamo.utils import counters

    from resnet.interop import backends

    torch.manual_seed(0)
    model = randomize_bn(build_network("resnet8", in_channels=1)).eval()
    engine = backends.torch_engine(model, "fp32", torch.device("cpu"), compile=True)
    assert engine.describe() == "torch fp32 (compiled)"
    x = torch.randn(6, 1, 8, 8)
    torch._dynamo.reset()
    counters.clear()
    with torch.no_grad():
        torch.testing.assert_close(engine(x), model(x), rtol=1e-4, atol=1e-4)
        frames = counters["stats"]["unique_graphs"]
        torch.testing.assert_close(engine(x[:4]), model(x[:4]), rtol=1e-4, atol=1e-4)  # the last, smaller batch
        assert counters["stats"]["unique_graphs"] == frames  # padded to 6: no second compilation
        torch.testing.assert_close(engine(x[2:]), model(x[2:]), rtol=1e-4, atol=1e-4)  # padding never leaks
        assert counters["stats"]["unique_graphs"] == frames + 1  # batch 4 again: compiled for, not padded
        torch.testing.assert_close(engine(x[1:5]), model(x[1:5]), rtol=1e-4, atol=1e-4)
        assert counters["stats"]["unique_graphs"] == frames + 1


@pytest.mark.parametrize(
    ("backend", "precision", "have_model"),
    [("onnxruntime", "fp32", True), ("auto", "int8", True), ("auto", "fp32", False)],
)
def test_compile_is_refused_where_the_torch_backend_does_not_run(backend: str, precision: str, have_model: bool):
    from resnet.errors import UserError
    from resnet.interop import backends

    with pytest.raises(UserError, match="--compile applies to the torch backend"):
        backends.resolve(backend, precision, torch.device("cpu"), have_model=have_model, compile=True)
    assert backends.resolve("auto", "fp32", torch.device("cpu"), compile=True) == "torch"


def test_batch_sizes_pads_shrunken_batches_and_caps_its_graphs():
    """predict batches that lost a few unreadable files: padded, not compiled for; never over MAX_GRAPHS."""
    from resnet.interop.backends import BatchSizes

    sizes: list[int] = []

    def net(x: torch.Tensor) -> torch.Tensor:
        sizes.append(len(x))
        return x * 2

    run = BatchSizes(net)
    for n in (32, 30, 31, 30, 31, 29, 29, 28, 28, 27, 27, 26, 26, 25, 25, 5, 5, 3, 3, 2, 2, 1, 1, 64, 1):
        x = torch.arange(float(n))[:, None]
        torch.testing.assert_close(run(x), x * 2)  # padding never leaks into the rows returned
    assert sizes[:14] == [32] * 14  # 26-31 rows waste at most a fifth of 32: padded
    # 25, 5 and 3 repeat and would waste more: one graph each, up to the cap; 2 and 1 then pad to 3; 64 fits
    # nothing compiled, so it must compile.
    assert set(sizes) == {32, 25, 5, 3, 64} and sizes[-1] == 3


def test_engine_logits_come_back_to_the_cpu(monkeypatch: pytest.MonkeyPatch):
    """An engine on a GPU returns its logits to the CPU, where evaluation keeps labels (no GPU needed)."""
    from resnet.interop import backends, inference

    moved = []

    class OnDevice:
        def __init__(self, t: torch.Tensor) -> None:
            self.t = t

        def cpu(self) -> torch.Tensor:
            moved.append(True)
            return self.t

    monkeypatch.setattr(inference, "optimize_for_inference", lambda model, **kw: lambda x: OnDevice(x.sum((2, 3))))
    engine = backends.torch_engine(build_network("resnet8"), "fp32", torch.device("cpu"))
    assert engine(torch.ones(2, 3, 4, 4)).shape == (2, 3) and moved == [True]


def test_a_failed_compilation_is_one_line():
    from torch._inductor.exc import InductorError

    from resnet.errors import UserError
    from resnet.interop.backends import BatchSizes

    def net(x: torch.Tensor) -> torch.Tensor:
        raise InductorError(RuntimeError("InvalidCxxCompiler: No working C++ compiler found"), None)

    with pytest.raises(
        UserError, match=r"torch.compile failed \(.*No working C\+\+ compiler.*\); run without --compile"
    ):
        BatchSizes(net)(torch.zeros(2, 3))
