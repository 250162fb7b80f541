"""Hugging Face's model interface on the model class: ``model.save_pretrained(dir)``,
``PretrainedResNet.from_pretrained(dir or Hub id)`` and ``model.push_to_hub(repo_id)``.

:class:`PretrainedResNet` is :class:`resnet.models.ResNet` (same modules, same weights, same forward) that also
carries ``pretrained_cfg`` and speaks ``huggingface_hub``'s ``ModelHubMixin`` protocol; ``resnet.create_model``,
``resnet.load`` and ``resnet.from_pretrained`` return it. ``huggingface_hub`` is an optional extra
(``pip install 'resnet-paper[hub]'``): without it local folders save and load all the same; only Hub ids and
``push_to_hub`` need it.

The folder is ``config.json`` (the model's description), ``model.safetensors`` and a model card ``README.md``
(:mod:`resnet.interop.model_card`). Every file is written atomically through :func:`write_folder`; a
``README.md`` that this package did not write is kept, as the mixin keeps one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from resnet.checkpoint import Checkpoint
from resnet.data.classes import default_classes
from resnet.errors import UserError
from resnet.interop.convert import load_any, require_safetensors
from resnet.interop.model_card import CARD_MARKER, model_card
from resnet.interop.pretrained import (
    CONFIG_FILE,
    PRETRAINED_FORMAT,
    WEIGHTS_FILE,
    checkpoint_dict,
    config_json,
    pretrained_cfg,
)
from resnet.io import check_folder_is_ours, read_input_text, write_output
from resnet.io.outputs import MANIFEST as OUTPUTS_MANIFEST
from resnet.models.network import ResNet
from resnet.models.pretrained_cfg import PretrainedCfg

CARD_FILE = "README.md"
HUB_EXTRA = "pip install 'resnet-paper[hub]'"
#: A model card is a page of text; a larger README.md is not one this package wrote.
MAX_CARD_BYTES = 1 << 20

try:  # the optional extra: the mixin gives push_to_hub and marks the class as a Hub model
    from huggingface_hub import ModelHubMixin
except ImportError:  # local folders need none of it
    ModelHubMixin = None  # type: ignore[assignment, misc]  # the extra is absent: every use checks for None

if TYPE_CHECKING:  # checkers see a ResNet: the mixin's methods a caller uses are all redefined on the class
    _HubMixin = object
else:
    _HubMixin = object if ModelHubMixin is None else ModelHubMixin


# No class keywords for the mixin's own card: save_pretrained writes this package's card (model_card.py), and
# the keywords differ between huggingface_hub versions (paper_url is unknown to 0.24).
class PretrainedResNet(ResNet, _HubMixin):
    """A :class:`~resnet.models.ResNet` with its description (``pretrained_cfg``) and Hugging Face's methods."""

    pretrained_cfg: PretrainedCfg
    _description: Checkpoint

    def save_pretrained(
        self,
        save_directory: str | Path,
        *,
        config: dict | None = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: dict[str, Any] | None = None,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Write ``config.json``, ``model.safetensors`` and the model card ``README.md`` into ``save_directory``.

        ``model_card_kwargs={"metrics": {"CIFAR-10 test error": "8.36%"}}`` lists measured results on the card.
        ``push_to_hub=True`` then uploads the folder (``huggingface_hub`` needed); returns the commit URL then.
        """
        if config is not None:
            raise UserError("save_pretrained writes the model's own description; drop config=")
        card = dict(model_card_kwargs or {})
        metrics = card.pop("metrics", None)
        if card:
            raise UserError(f"model_card_kwargs takes 'metrics' only (measured results), not {', '.join(card)}")
        write_folder(save_directory, self.checkpoint(), metrics=metrics)
        if not push_to_hub:
            return None
        return self.push_to_hub(repo_id or Path(save_directory).name, **push_to_hub_kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload the model folder to the Hugging Face Hub (``huggingface_hub`` and a login needed)."""
        if ModelHubMixin is None:
            raise UserError(f"push_to_hub needs huggingface_hub: {HUB_EXTRA}")
        # The folder's record of what resnet wrote (resnet.io's output rule) is local bookkeeping, not the model.
        ignore = kwargs.pop("ignore_patterns", None) or []
        ignore = [ignore] if isinstance(ignore, str) else list(ignore)
        patterns, push = [*ignore, OUTPUTS_MANIFEST], ModelHubMixin.push_to_hub
        return push(self, repo_id, ignore_patterns=patterns, **kwargs)  # type: ignore[arg-type]  # a base when installed

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **hub_kwargs: Any) -> PretrainedResNet:
        """The eval-mode model of a :meth:`save_pretrained` folder or of a Hub repository holding one.

        ``hub_kwargs``: ``huggingface_hub``'s download options (``revision``, ``cache_dir``, ``token``,
        ``local_files_only``, ``force_download``).
        """
        path = Path(pretrained_model_name_or_path)
        folder = path if path.exists() else download(str(pretrained_model_name_or_path), **hub_kwargs)
        loaded = load_any(folder)
        return as_pretrained(loaded.model, loaded.checkpoint)

    def checkpoint(self) -> Checkpoint:
        """This model's weights and description as a :class:`~resnet.checkpoint.Checkpoint` (validated)."""
        description = getattr(self, "_description", None)
        if not isinstance(description, Checkpoint):
            raise UserError("this model carries no description; make it with resnet.create_model / resnet.load")
        return checkpoint_of(self, description)


def checkpoint_of(model: nn.Module, description: Checkpoint | dict[str, Any]) -> Checkpoint:
    """``model``'s weights with their ``description`` (a weightless checkpoint, or a ``pretrained_cfg`` dict of
    this package's own layout), checked to read back. A classifier replaced since (``reset_classifier``)
    keeps the description but its classes, which have no names yet."""
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear):
        raise UserError("save_pretrained needs a classifier (reset_classifier(0) removed it): give it a class count")
    num_classes = fc.out_features
    if isinstance(description, dict):  # a model that only carries pretrained_cfg
        cfg = {**description, "model_kwargs": {**description["model_kwargs"], "num_classes": num_classes}}
        return Checkpoint.from_dict(checkpoint_dict(cfg, model.state_dict(), "model"), "model")
    ckpt = replace(
        description,
        state_dict=model.state_dict(),
        model_kwargs={**description.model_kwargs, "num_classes": num_classes},
    )
    if num_classes != len(ckpt.classes):
        ckpt.classes, ckpt.dataset = default_classes("unknown", num_classes), "unknown"
    return Checkpoint.from_dict(ckpt.to_dict(), "model")


def as_pretrained(net: nn.Module, ckpt: Checkpoint) -> PretrainedResNet:
    """``net`` (a :class:`ResNet` just built) as a :class:`PretrainedResNet` described by ``ckpt``.

    The class changes in place: the subclass adds methods only, so nothing is copied or rebuilt. The model
    keeps ``ckpt`` without its weights (what save_pretrained and exports write) and shows it as
    ``pretrained_cfg``, derived here and only here.
    """
    if type(net) not in (ResNet, PretrainedResNet):
        raise TypeError(f"expected a resnet.models.ResNet, got {type(net).__name__}")
    net.__class__ = PretrainedResNet
    assert isinstance(net, PretrainedResNet)  # for type checkers: the class was just set
    net._description = replace(ckpt, state_dict={}, training=None)
    net.pretrained_cfg = pretrained_cfg(ckpt)
    return net


def write_folder(directory: str | Path, ckpt: Checkpoint, *, metrics: dict[str, Any] | None = None) -> Path:
    """The pretrained folder of ``ckpt``: ``config.json``, ``model.safetensors`` and ``README.md`` (the card),
    each under the output rule (:func:`resnet.io.write_output`); a folder holding files resnet did not write
    there (another tool's ``config.json``) is refused unless ``--force`` (:func:`resnet.io.replacing`)."""
    st = require_safetensors()
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; save_pretrained writes a folder: choose another path")
    tensors = {k: v.detach().cpu().contiguous() for k, v in ckpt.state_dict.items()}
    files = {
        WEIGHTS_FILE: st.torch.save(tensors, metadata={"format": PRETRAINED_FORMAT}),
        CONFIG_FILE: config_json(ckpt.metadata(str(out))).encode(),
    }
    card = out / CARD_FILE
    if not card.exists() or CARD_MARKER in read_input_text(card, max_bytes=MAX_CARD_BYTES, errors="replace"):
        files[CARD_FILE] = model_card(ckpt, metrics).encode()
    # Before anything is written; a model card the user wrote stays, as huggingface_hub's mixin keeps one.
    check_folder_is_ours(out, tuple(files), keep=(CARD_FILE,))
    for name, data in files.items():
        write_output(out / name, data)
    return out


def download(repo_id: str, **hub_kwargs: Any) -> Path:
    """The folder of Hub repository ``repo_id`` in the local cache (downloaded if needed), or one clear line."""
    if ModelHubMixin is None:
        raise UserError(f"{repo_id}: no such folder; loading a Hugging Face Hub id needs huggingface_hub: {HUB_EXTRA}")
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id=repo_id, allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, CARD_FILE], **hub_kwargs)
    except Exception as e:  # noqa: BLE001 - offline, unknown repo, bad id, auth: all said in one line
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"{repo_id}: not a local folder, and the Hugging Face Hub did not give it ({reason[:200]}); "
            "check the id, the network (HF_HUB_OFFLINE) or pass a folder"
        ) from None
    return Path(folder)
