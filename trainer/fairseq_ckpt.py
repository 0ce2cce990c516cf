"""Read fairseq checkpoints without fairseq and without running code from the file.

fairseq saves ``{'args': argparse.Namespace, 'model': state_dict, 'extra_state': ...,
'optimizer_history': ...}`` (newer releases: ``'cfg'`` instead of ``'args'``) with
``torch.save``. ``torch.load(weights_only=True)`` refuses such files because of the
Namespace and of fairseq's own classes (meters); a plain ``torch.load`` would import
fairseq and, for a hostile file, run whatever the pickle names. This module unpickles
with an allow-list instead:

* builtins containers and scalars, ``argparse.Namespace``, ``collections.OrderedDict``;
* tensors: torch's rebuild functions are replaced by local ones that only ever make a
  strided view of bytes read from the file;
* every other global (fairseq meters, ``os.system``, ...) becomes an inert placeholder
  class: "calling" it records the arguments and nothing else.

Both container formats are read: torch's zip format (torch >= 1.6, what newer fairseq
writes) and the legacy pickle-sequence format of torch < 1.6 (fairseq's published
wav2vec / vq-wav2vec checkpoints from 2019). The even older tar format is refused.
"""
from __future__ import annotations

import _compat_pickle
import argparse
import collections
import io
import pickle
import struct
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainer._errors import FeatureError

# torch's legacy format starts with these three small pickles.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}

# Builtins a checkpoint may legitimately name; anything else (eval, exec, getattr,
# __import__, open, ...) becomes a placeholder.
_SAFE_BUILTINS = {
    "set": set,
    "frozenset": frozenset,
    "slice": slice,
    "complex": complex,
    "bytearray": lambda *a: bytearray(*a) if a and isinstance(a[0], (str, bytes)) else bytearray(),
    "range": range,
    "list": list,
    "tuple": tuple,
    "dict": dict,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "object": object,
}


class UnknownObject:
    """Stands in for a class or function the allow-list does not know.

    Subclasses are made per pickled name (``module``/``name`` class attributes), so a
    loaded checkpoint still shows what was there. Constructing, calling or filling one
    only stores the data it is handed.
    """

    module = "?"
    name = "?"

    # pickle makes instances through __new__ (NEWOBJ) or a call (REDUCE): both land here
    def __new__(cls, *args: Any, **kwargs: Any) -> "UnknownObject":
        self = super().__new__(cls)
        self.args = args
        self.kwargs = kwargs
        self.state = None
        self.items = []
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    # pickle's BUILD, SETITEM(S), APPEND(S) on an instance
    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def append(self, value: Any) -> None:
        self.items.append(value)

    def extend(self, values: Any) -> None:
        self.items.extend(values)

    def __repr__(self) -> str:
        return f"<unloaded {self.module}.{self.name}>"


def _placeholder(module: str, name: str) -> type:
    return type(
        f"Unknown_{name}",
        (UnknownObject,),
        {"module": module, "name": name, "__module__": __name__},
    )


class _StorageType:
    """What ``torch FloatStorage`` etc. unpickle to: only a dtype."""

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        self.name = name
        self.dtype = dtype


class _Storage:
    """A flat tensor holding one storage's elements; tensors are views of it."""

    def __init__(self, flat: torch.Tensor) -> None:
        self.flat = flat


class _TensorType:
    """``torch Tensor`` / ``torch.nn.parameter Parameter`` named by tensor subclass rebuilds."""


def _as_int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise pickle.UnpicklingError(f"tensor {what} is not a tuple of ints: {value!r}")
    return tuple(value)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, *_ignored: Any) -> torch.Tensor:
    # Stands in for torch._utils._rebuild_tensor(_v2): a strided view, nothing more.
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("tensor data does not come from a storage in the file")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise pickle.UnpicklingError(f"bad tensor storage offset {storage_offset!r}")
    size_t = _as_int_tuple(size, "size")
    stride_t = _as_int_tuple(stride, "stride")
    if len(size_t) != len(stride_t) or any(s < 0 for s in size_t) or any(s < 0 for s in stride_t):
        raise pickle.UnpicklingError(f"bad tensor geometry size={size_t} stride={stride_t}")
    if all(s > 0 for s in size_t):
        last = storage_offset + sum((n - 1) * st for n, st in zip(size_t, stride_t))
        if last >= storage.flat.numel():
            raise pickle.UnpicklingError("tensor reaches past the end of its storage")
    return storage.flat.as_strided(size_t, stride_t, storage_offset)


def _rebuild_parameter(data: Any, *_ignored: Any) -> Any:
    return data


def _rebuild_from_type(func: Any, _new_type: Any, args: Any, _state: Any) -> Any:
    # torch wraps tensor subclasses (Parameter...) this way; keep the plain tensor.
    if func not in (_rebuild_tensor, _rebuild_parameter) or not isinstance(args, tuple):
        raise pickle.UnpicklingError("unsupported tensor subclass rebuild")
    return func(*args)


def _codecs_encode(text: Any, encoding: str = "latin1") -> bytes:
    # Python 2 / protocol 2 pickles of bytes go through _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("unsupported _codecs.encode call")
    return text.encode("latin1")


_TORCH_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch", "Tensor"): _TensorType,
    ("torch.nn.parameter", "Parameter"): _TensorType,
    ("_codecs", "encode"): _codecs_encode,
    ("argparse", "Namespace"): argparse.Namespace,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves globals through the allow-list only."""

    def __init__(self, file: Any, load_storage: Any = None) -> None:
        super().__init__(file, encoding="utf-8")
        self._load_storage = load_storage
        self.replaced: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        # protocol 0-2 pickles carry Python 2 names (__builtin__, copy_reg, ...)
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if module == "builtins" and name in _SAFE_BUILTINS:
            return _SAFE_BUILTINS[name]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        known = _TORCH_GLOBALS.get((module, name))
        if known is not None:
            return known
        self.replaced.add(f"{module}.{name}")
        return _placeholder(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if self._load_storage is None:
            raise pickle.UnpicklingError("unexpected persistent id")
        if not isinstance(pid, tuple) or not pid:
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module":  # legacy format: source of pickled nn.Modules, unused
            return None
        if kind != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id kind {kind!r}")
        return self._load_storage(pid[1:])


@dataclass
class RawCheckpoint:
    """What :func:`read_torch_file` returns: the unpickled object and what was neutralised."""

    obj: Any
    replaced: set[str] = field(default_factory=set)
    container: str = "zip"


def _storage_key(key: Any) -> str:
    if isinstance(key, bytes):
        key = key.decode("ascii")
    if not isinstance(key, str):
        raise pickle.UnpicklingError(f"bad storage key {key!r}")
    return key


def _check_storage_header(data: tuple, n_fields: int) -> tuple[_StorageType, str, int]:
    if len(data) != n_fields:
        raise pickle.UnpicklingError("malformed storage record")
    storage_type, key, numel = data[0], _storage_key(data[1]), data[3]
    if not isinstance(storage_type, _StorageType):
        raise pickle.UnpicklingError("storage of an unknown type")
    if not isinstance(numel, int) or numel < 0:
        raise pickle.UnpicklingError(f"bad storage size {numel!r}")
    return storage_type, key, numel


def _bytes_to_flat(raw: bytes, dtype: torch.dtype, big_endian: bool) -> torch.Tensor:
    flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
    elsize = torch.empty(0, dtype=dtype).element_size()
    if big_endian and elsize > 1:
        flat = flat.view(-1, elsize).flip(-1).reshape(-1)
    return flat.view(dtype)


def _read_zip(path: Path) -> RawCheckpoint:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
        if not pickles:
            raise FeatureError(f"{path}: zip file without data.pkl; expected a PyTorch checkpoint")
        prefix = pickles[0][: -len("data.pkl")]
        big_endian = False
        if f"{prefix}byteorder" in names:
            big_endian = archive.read(f"{prefix}byteorder").strip() == b"big"
        storages: dict[str, _Storage] = {}

        def load_storage(data: tuple) -> _Storage:
            storage_type, key, numel = _check_storage_header(data, 4)
            if key not in storages:
                member = f"{prefix}data/{key}"
                if member not in names:
                    raise pickle.UnpicklingError(f"storage {key} missing from the archive")
                elsize = torch.empty(0, dtype=storage_type.dtype).element_size()
                if archive.getinfo(member).file_size != numel * elsize:
                    raise pickle.UnpicklingError(f"storage {key} has the wrong size")
                storages[key] = _Storage(_bytes_to_flat(archive.read(member), storage_type.dtype, big_endian))
            return storages[key]

        unpickler = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), load_storage)
        obj = unpickler.load()
    return RawCheckpoint(obj, unpickler.replaced, "zip")


def _read_legacy(path: Path) -> RawCheckpoint:
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        magic = _RestrictedUnpickler(f).load()
        if magic != _LEGACY_MAGIC:
            raise FeatureError(f"{path}: not a PyTorch checkpoint (no torch magic number)")
        protocol = _RestrictedUnpickler(f).load()
        if protocol != _LEGACY_PROTOCOL:
            raise FeatureError(f"{path}: unsupported legacy PyTorch protocol {protocol!r}")
        _RestrictedUnpickler(f).load()  # sys info (byte order, type sizes)

        roots: dict[str, tuple[torch.dtype, int, _Storage]] = {}

        def load_storage(data: tuple) -> _Storage:
            storage_type, key, numel = _check_storage_header(data, 5)
            elsize = torch.empty(0, dtype=storage_type.dtype).element_size()
            if key not in roots:
                if numel * elsize > file_size:  # refuse absurd allocations
                    raise pickle.UnpicklingError(f"storage {key} larger than the file")
                # filled in place once the pickle is read: the bytes follow it
                roots[key] = (storage_type.dtype, numel, _Storage(torch.empty(numel, dtype=storage_type.dtype)))
            dtype, root_numel, root = roots[key]
            view = data[4]
            if view is None:
                return root
            _view_key, offset, view_numel = view
            if not (isinstance(offset, int) and isinstance(view_numel, int)) or offset < 0 or offset + view_numel > root_numel:
                raise pickle.UnpicklingError("bad storage view")
            return _Storage(root.flat[offset : offset + view_numel])

        unpickler = _RestrictedUnpickler(f, load_storage)
        obj = unpickler.load()
        keys = _RestrictedUnpickler(f).load()
        if not isinstance(keys, list):
            raise pickle.UnpicklingError("storage key list missing")
        for key in keys:
            key = _storage_key(key)
            if key not in roots:
                raise pickle.UnpicklingError(f"data for unknown storage {key}")
            dtype, numel, root = roots[key]
            header = f.read(8)
            if len(header) != 8:
                raise pickle.UnpicklingError("file ends inside the tensor data")
            (stored_numel,) = struct.unpack("<q", header)
            if stored_numel != numel:
                raise pickle.UnpicklingError(f"storage {key}: {stored_numel} elements stored, {numel} announced")
            nbytes = numel * root.flat.element_size()
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise pickle.UnpicklingError("file ends inside the tensor data")
            if nbytes:
                root.flat.view(torch.uint8).copy_(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
    return RawCheckpoint(obj, unpickler.replaced, "legacy")


def read_torch_file(path: str | Path) -> RawCheckpoint:
    """Unpickle a ``torch.save`` file safely (see the module doc). Raises FeatureError."""
    path = Path(path)
    if not path.is_file():
        raise FeatureError(f"{path}: checkpoint file not found")
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        if tarfile.is_tarfile(path):
            raise FeatureError(f"{path}: PyTorch tar checkpoint (torch < 0.4) is not supported; re-save it with a newer torch")
        return _read_legacy(path)
    except FeatureError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, RuntimeError, struct.error, zipfile.BadZipFile, UnicodeDecodeError, OverflowError,
            MemoryError) as exc:
        raise FeatureError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None


# ---------------------------------------------------------------- fairseq layout

@dataclass
class FairseqCheckpoint:
    """The parts of a fairseq checkpoint the feature extractor needs."""

    path: Path
    model_settings: dict[str, Any]  # the model's args / cfg.model as a plain dict
    state_dict: dict[str, torch.Tensor]
    settings_form: str  # "args" (argparse era) or "cfg" (hydra era)
    replaced: set[str] = field(default_factory=set)  # globals neutralised on load


def _plain_settings(obj: Any) -> dict[str, Any] | None:
    if isinstance(obj, argparse.Namespace):
        return dict(vars(obj))
    if isinstance(obj, dict):
        return dict(obj)
    if isinstance(obj, UnknownObject):
        return _unwrap_omegaconf(obj)
    return None


def _unwrap_omegaconf(obj: Any) -> Any:
    """Best effort for a pickled omegaconf DictConfig (a placeholder here): its state
    keeps values under ``_content`` and leaf nodes under ``_val``."""
    if isinstance(obj, UnknownObject):
        state = obj.state
        if isinstance(state, tuple) and state and isinstance(state[0], dict):
            state = state[0]
        if isinstance(state, dict):
            if "_content" in state:
                return _unwrap_omegaconf(state["_content"])
            if "_val" in state:
                return _unwrap_omegaconf(state["_val"])
        return None
    if isinstance(obj, dict):
        return {k: _unwrap_omegaconf(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unwrap_omegaconf(v) for v in obj]
    return obj


def load_fairseq_checkpoint(path: str | Path) -> FairseqCheckpoint:
    """Read a fairseq checkpoint (legacy ``args`` or newer ``cfg`` form) without fairseq."""
    path = Path(path)
    raw = read_torch_file(path)
    ckpt = raw.obj
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise FeatureError(f"{path}: not a fairseq checkpoint (expected a dict with 'model' and 'args' or 'cfg')")
    settings, form = None, ""
    if ckpt.get("args") is not None:
        settings, form = _plain_settings(ckpt["args"]), "args"
    elif ckpt.get("cfg") is not None:
        cfg = _plain_settings(ckpt["cfg"])
        if cfg is not None:
            model_cfg = cfg.get("model")
            if model_cfg is None and isinstance(cfg.get("args"), argparse.Namespace):
                settings, form = dict(vars(cfg["args"])), "args"
            else:
                settings, form = _plain_settings(model_cfg), "cfg"
    if settings is None:
        raise FeatureError(f"{path}: not a fairseq checkpoint (no model settings under 'args' or 'cfg.model')")
    state = {}
    for key, value in ckpt["model"].items():
        if isinstance(key, str) and isinstance(value, torch.Tensor):
            state[key] = value
    return FairseqCheckpoint(path, settings, state, form, raw.replaced)


__all__ = [
    "FairseqCheckpoint",
    "RawCheckpoint",
    "UnknownObject",
    "load_fairseq_checkpoint",
    "read_torch_file",
]
