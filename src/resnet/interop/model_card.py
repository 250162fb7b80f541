"""The model card (``README.md``) a pretrained folder carries: what the net is, how to feed it, what it
predicts, how well it does where that is known, and the paper to cite.

Hugging Face reads the YAML block at the top (library, licence, tags, dataset, pipeline); people read the
rest. Every fact comes from the checkpoint's own description; accuracy is only printed where it is known:
measured numbers the caller passes, and the paper's own figure for the architecture, labelled as such.
"""

from __future__ import annotations

import json
from typing import Any

from resnet import paper
from resnet.checkpoint import Checkpoint
from resnet.data.datasets import hub_dataset
from resnet.eval.views import view_geometry
from resnet.models import model_info

#: First line of every card written here: a card without it is the user's own and is never replaced.
CARD_MARKER = "<!-- model card written by resnet-paper's save_pretrained; edit freely (it is then kept) -->"


def paper_error(model_name: str, shortcut: str | None) -> str | None:
    """The paper's reported error for this architecture (its own training, not these weights), or ``None``."""
    info = model_info(model_name)
    if not info.paper:  # the paper does not describe this net (a family of one's own): nothing to quote
        return None
    if info.dataset == "cifar10" and info.residual and info.depth in paper.TABLE6:
        return f"{paper.TABLE6[info.depth][1]:.2f}% CIFAR-10 test error (Table 6)"
    key = f"{model_name}-{shortcut}" if f"{model_name}-{shortcut}" in paper.TABLE3 else model_name
    if info.dataset == "imagenet" and key in paper.TABLE3:
        top1, top5 = paper.TABLE3[key]
        return f"{top1:.2f}% top-1 / {top5:.2f}% top-5 ImageNet val error, 10-crop testing (Table 3)"
    return None


def _front_matter(ckpt: Checkpoint) -> str:
    lines = [
        "---",
        "library_name: resnet-paper",
        "license: mit",
        "pipeline_tag: image-classification",
        "tags:",
        "- image-classification",
        "- resnet",
        "- model_hub_mixin",
    ]
    hub = hub_dataset(ckpt.dataset)  # the dataset's description names its Hub id
    if hub is not None:
        lines += ["datasets:", f"- {hub}"]
    return "\n".join([*lines, "---"])


def model_card(ckpt: Checkpoint, metrics: dict[str, Any] | None = None) -> str:
    """The card's Markdown for ``ckpt`` (its weights need not be filled in); ``metrics``: measured results
    (name -> value) to list as such."""
    info = model_info(ckpt.model_name)
    c, h, w = (int(v) for v in ckpt.input_size)
    pre = ckpt.preprocessing
    geometry = view_geometry(info.test_views == "crops", (h, w), ckpt.metadata().resize.shorter_side)
    call = ", ".join([repr(ckpt.model_name), *(f"{k}={v!r}" for k, v in sorted(ckpt.model_kwargs.items()))])
    shown = ", ".join(ckpt.classes[:10]) + (f", ... ({len(ckpt.classes)} in all)" if len(ckpt.classes) > 10 else "")
    lines = [
        _front_matter(ckpt),  # first, where the Hub looks for it
        CARD_MARKER,
        "",
        f"# {ckpt.model_name}",
        "",
        f"A {'residual' if info.residual else 'plain'} {info.family} network of depth {info.depth} from *Deep "
        "Residual Learning for Image Recognition* (He et al., CVPR 2016), as built by "
        f"resnet-paper (`pip install resnet-paper`): `resnet.create_model({call})`.",
        "",
        "## Use",
        "",
        "```python",
        "import resnet",
        'model = resnet.from_pretrained("THIS_FOLDER_OR_HUB_ID")  # eval mode; model.pretrained_cfg describes it',
        "```",
        "",
        "## Preprocessing",
        "",
        f"- input: {c} x {h} x {w} (channels x height x width), RGB, pixels scaled to [0, 1]",
        f"- resize: shorter side to {geometry['shorter_side']} ({geometry['filter']}, antialiased), then a centre "
        f"crop of {h} x {w}",
        f"- normalise: mean {json.dumps(_rounded(pre['mean']))}, std {json.dumps(_rounded(pre['std']))}",
        "",
        "## Classes",
        "",
        f"{len(ckpt.classes)} classes ({ckpt.dataset}): {shown}",
        "",
        "## Accuracy",
        "",
    ]
    measured = [f"- {name}: {value} (measured on these weights)" for name, value in (metrics or {}).items()]
    reported = paper_error(ckpt.model_name, ckpt.model_kwargs.get("shortcut"))
    if reported:
        measured.append(f"- the paper reports {reported} for this architecture (its training, not these weights)")
    lines += measured or ["Not measured for these weights."]
    lines += ["", "## Citation", "", "```bibtex", paper.BIBTEX.strip(), "```", ""]
    return "\n".join(lines)


def _rounded(t: Any) -> list[float]:
    return [round(float(v), 6) for v in t.detach().cpu().flatten().tolist()]
