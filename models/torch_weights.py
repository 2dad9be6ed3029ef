"""A legacy (pre-zip) PyTorch state-dict file -> numpy arrays, without torch and without pickle.load.

The file is five pickles and the raw storages: a magic number, a protocol version, a sys-info
dict, the state dict (its tensors refer to storages by persistent id), the list of storage keys,
then each storage as an 8-byte little-endian element count followed by its raw bytes. Only the
classes a state dict needs are allowed; any other class in the file is refused.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

_MAGIC = 0x1950A86A20F9469CFC6C
_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchFileError(ValueError):
    """The file is not a legacy PyTorch state dict, or it names a class that is not allowed."""


@dataclass(frozen=True)
class _StorageType:
    name: str


@dataclass(frozen=True)
class _TensorRef:
    key: str
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_rest):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


class _AllowListUnpickler(pickle.Unpickler):
    """Resolves only the few globals a state dict names; storages come back as their keys."""

    def __init__(self, fh, storages: dict[str, _StorageType] | None = None):
        super().__init__(fh)
        self._storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise TorchFileError(f"the weights file names {module}.{name}, which is not allowed")

    def persistent_load(self, pid):
        if self._storages is None:
            raise TorchFileError("a storage reference outside the state dict")
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise TorchFileError(f"unexpected persistent id {pid!r:.80}")
        _, storage_type, key, _location, _size = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise TorchFileError(f"storage {key!r} has no allowed storage type")
        self._storages[str(key)] = storage_type
        return str(key)


def read_state_dict(data: bytes) -> OrderedDict[str, np.ndarray]:
    """Every tensor of a legacy PyTorch state-dict file, by name, as a numpy array (a copy)."""
    fh = io.BytesIO(data)
    try:
        if _AllowListUnpickler(fh).load() != _MAGIC:
            raise TorchFileError("not a legacy PyTorch file (wrong magic number)")
        if _AllowListUnpickler(fh).load() != _PROTOCOL:
            raise TorchFileError("unsupported PyTorch file protocol")
        _AllowListUnpickler(fh).load()  # sys info: byte order and type sizes, little-endian assumed
        storage_types: dict[str, _StorageType] = {}
        refs = _AllowListUnpickler(fh, storage_types).load()
        keys = _AllowListUnpickler(fh).load()
    except (pickle.UnpicklingError, EOFError) as exc:
        raise TorchFileError(f"not a readable PyTorch state dict: {exc}") from exc
    if not isinstance(refs, dict) or not isinstance(keys, list):
        raise TorchFileError("the file holds no state dict")
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        dtype = np.dtype(_STORAGE_DTYPES[storage_types[key].name])
        header = fh.read(8)
        if len(header) != 8:
            raise TorchFileError(f"storage {key} is truncated")
        (count,) = struct.unpack("<q", header)
        raw = fh.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise TorchFileError(f"storage {key} is truncated")
        storages[key] = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
    if fh.read(1):
        raise TorchFileError("unexpected bytes after the last storage")
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for name, ref in refs.items():
        if not isinstance(ref, _TensorRef):
            raise TorchFileError(f"state dict entry {name!r} is not a tensor")
        base = storages[ref.key]
        extent = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride, strict=True)) + 1
        if min(ref.shape, default=1) < 0 or min(ref.stride, default=0) < 0 or extent > len(base):
            raise TorchFileError(f"tensor {name!r} lies outside its storage")
        itemsize = base.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[ref.offset :],
            shape=ref.shape,
            strides=tuple(s * itemsize for s in ref.stride),
            writeable=False,
        )
        out[name] = np.array(view, dtype=base.dtype.newbyteorder("="))
    return out
