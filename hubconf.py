"""torch.hub entry points: ``torch.hub.load(repo_dir, "resnet50", source="local", **kwargs)``.

Every model of ``resnet.list_models()`` is an entry; keywords are those of ``resnet.create_model``
(``checkpoint_path``, ``num_classes``, ``in_chans``, ``features_only``, ...). No weights are downloaded:
``pretrained=True`` says how to bring them. Works from a checkout (``src/`` is put on the path) or with
the package installed (``pip install resnet-paper``).
"""

import sys
from pathlib import Path

dependencies = ["torch", "numpy", "yaml", "PIL"]  # checked by torch.hub before anything is imported

_SRC = str(Path(__file__).resolve().parent / "src")
if Path(_SRC, "resnet", "__init__.py").is_file() and _SRC not in sys.path:
    sys.path.insert(0, _SRC)  # this checkout's package, not an unrelated `resnet` found elsewhere

import resnet as _resnet  # noqa: E402


def _entry(name: str):
    def entry(pretrained: bool = False, **kwargs):
        return _resnet.create_model(name, pretrained=pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"{_resnet.model_info(name).doc}. Keywords: see resnet.create_model."
    return entry


for _name in _resnet.list_models():
    globals()[_name] = _entry(_name)
