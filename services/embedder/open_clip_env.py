"""Import open_clip (open-clip-torch) beside the CPU build of torch, for the offline tools that
read an operator's CLIP checkpoint (clip_import, idclip training). The service never imports it.

Two facts of this stack decide how (STACK.md, "Traps"):

- open_clip imports torchvision, and the only torchvision wheel on the package index is a CUDA
  build. Pinned to the release made for the pinned torch (0.28.0 for torch 2.13.0), pip keeps
  the CPU torch, but torchvision's C++ ops cannot load beside it, and its Python part then
  fails on import (``operator torchvision::nms does not exist``): it registers shape functions
  for two ops whose schemas only the C++ library defines. CLIP needs none of torchvision's ops
  (open_clip uses its PIL transforms and a pure-Python layer), so the two schemas are defined
  here, without kernels, when and only when that failure happens; calling those ops still fails.
- transformers imports torchvision whenever it is installed, so a torchvision in the main
  environment breaks sentence-transformers (MiniLM) in every process. open_clip and torchvision
  are therefore installed into a folder of their own (scripts/install.sh:
  ``pip install --no-deps --target .venv/open-clip-packages -r
  services/embedder/open_clip_requirements.txt``) that only these tools put on ``sys.path``.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

# Where scripts/install.sh puts open_clip and its torchvision; FACESEARCH_OPEN_CLIP_PATH moves it.
PACKAGES_ENV = "FACESEARCH_OPEN_CLIP_PATH"
PACKAGES_DIR = "open-clip-packages"
REQUIREMENTS = Path(__file__).with_name("open_clip_requirements.txt")

# The schemas torchvision's C++ library defines for the two ops whose fake (shape) functions
# its Python part registers unconditionally (torchvision/_meta_registrations.py, 0.28).
_TORCHVISION_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_schema_library: object | None = None  # kept alive: dropping it would undefine the schemas


def packages_dir() -> Path:
    configured = os.environ.get(PACKAGES_ENV)
    return Path(configured) if configured else Path(sys.prefix) / PACKAGES_DIR


def install_hint() -> str:
    return (
        f"install it with scripts/install.sh, or: pip install --no-deps --target "
        f"{packages_dir()} -r {REQUIREMENTS} (another folder: set {PACKAGES_ENV})"
    )


def import_open_clip() -> ModuleType:
    """The open_clip module; RuntimeError saying how to install it when it is not there."""
    folder = packages_dir()
    if folder.is_dir() and str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    try:
        _import_torchvision()
        return importlib.import_module("open_clip")
    except ModuleNotFoundError as exc:
        if exc.name not in ("open_clip", "torchvision", "timm", "ftfy"):
            raise
        raise RuntimeError(
            f"open_clip is not installed ({exc.name} is missing): {install_hint()}"
        ) from exc


def _import_torchvision() -> None:
    try:
        importlib.import_module("torchvision")
    except RuntimeError as exc:
        if "torchvision::nms does not exist" not in str(exc):
            raise
        _define_torchvision_schemas()
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]  # the failed first import left half-made modules
        importlib.import_module("torchvision")


def _define_torchvision_schemas() -> None:
    global _schema_library
    import torch

    if _schema_library is not None:
        return
    library = torch.library.Library("torchvision", "DEF")
    for schema in _TORCHVISION_SCHEMAS:
        library.define(schema)
    _schema_library = library
