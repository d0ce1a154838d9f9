"""A strict reader of CTranslate2's ``model.bin`` (binary versions 5 and 6), in plain Python + numpy.

No pickle, no code from the model directory, no ``ctranslate2`` needed. The layout is the one
``ctranslate2.specs.model_spec.ModelSpec._serialize`` writes (all integers little-endian)::

    uint32 binary_version
    string spec_name                       # uint16 length (NUL included), bytes, NUL
    uint32 spec_revision
    uint32 n_variables
    n_variables x { string name; uint8 rank; uint32 dims[rank]; uint8 dtype_id;
                    uint32 n_bytes; n_bytes of data }
    uint32 n_aliases
    n_aliases x { string alias; string target }

``dtype_id`` follows CTranslate2's ``DataType`` enum: 0 float32, 1 int8, 2 int16, 3 int32,
4 float16, 5 bfloat16. Every count, length, dtype and shape is checked against the file size
before anything is read; any inconsistency is a :class:`CT2FormatError` naming the file.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featurekit.extractors.ssl.common import ModelError

BINARY_VERSIONS = (5, 6)
#: CTranslate2 ``DataType`` id -> (name, item size in bytes)
DTYPES: dict[int, tuple[str, int]] = {0: ("float32", 4), 1: ("int8", 1), 2: ("int16", 2), 3: ("int32", 4),
                                      4: ("float16", 2), 5: ("bfloat16", 2)}
MAX_RANK = 8
_MIN_VARIABLE_BYTES = 3 + 1 + 1 + 4  # shortest name (length + NUL), rank, dtype, n_bytes
_MIN_ALIAS_BYTES = 2 * 3


class CT2FormatError(ModelError):
    """A CTranslate2 ``model.bin`` that is malformed or not what the reader supports."""


@dataclass(frozen=True)
class CT2Variable:
    """One stored variable: where its bytes are and what they hold."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    offset: int
    n_bytes: int


@dataclass
class CT2Model:
    """The index of a ``model.bin``: spec, revision, variables by name and aliases (alias -> target)."""

    path: Path
    binary_version: int
    spec: str
    revision: int
    variables: dict[str, CT2Variable] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        return name in self.variables or name in self.aliases

    def variable(self, name: str) -> CT2Variable:
        """The variable ``name`` (an alias resolves to its target); an error naming the file if absent."""
        target = self.aliases.get(name, name)
        try:
            return self.variables[target]
        except KeyError:
            raise CT2FormatError(f"{self.path}: no variable {name!r} in this {self.spec} model") from None

    def shape(self, name: str) -> tuple[int, ...]:
        return self.variable(name).shape

    def read(self, name: str) -> np.ndarray:
        """The variable's values as a numpy array of its stored shape (bfloat16 widened to float32)."""
        var = self.variable(name)
        with open(self.path, "rb") as f:
            f.seek(var.offset)
            data = f.read(var.n_bytes)
        if len(data) != var.n_bytes:
            raise CT2FormatError(f"{self.path}: truncated while reading {var.name!r} (file changed?)")
        if var.dtype == "bfloat16":
            bits = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
            return bits.view(np.float32).reshape(var.shape)
        return np.frombuffer(data, dtype=np.dtype(var.dtype).newbyteorder("<")).reshape(var.shape)

    def scalar(self, name: str) -> int | float:
        """A rank-0 variable (e.g. ``encoder/num_heads``) as a Python number."""
        value = self.read(name)
        if value.shape != ():
            raise CT2FormatError(f"{self.path}: {name!r} should be a scalar, has shape {value.shape}")
        return value.item()


class _Cursor:
    def __init__(self, f, path: Path, size: int) -> None:
        self.f, self.path, self.size = f, path, size

    @property
    def pos(self) -> int:
        return self.f.tell()

    def left(self) -> int:
        return self.size - self.pos

    def fail(self, what: str) -> CT2FormatError:
        return CT2FormatError(f"{self.path}: not a valid CTranslate2 model.bin: {what} "
                              f"(at byte {self.pos} of {self.size})")

    def unpack(self, fmt: str, what: str) -> tuple:
        n = struct.calcsize("<" + fmt)
        if n > self.left():
            raise self.fail(f"file ends inside {what} (truncated)")
        return struct.unpack("<" + fmt, self.f.read(n))

    def string(self, what: str) -> str:
        (n,) = self.unpack("H", f"the length of {what}")
        if n < 1:
            raise self.fail(f"{what} has length 0 (a NUL terminator is required)")
        if n > self.left():
            raise self.fail(f"{what} claims {n} bytes, only {self.left()} left (truncated or corrupt)")
        raw = self.f.read(n)
        if raw[-1] != 0 or 0 in raw[:-1]:
            raise self.fail(f"{what} is not a NUL-terminated string")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8") from None

    def skip(self, n: int) -> None:
        self.f.seek(n, os.SEEK_CUR)


def read_ct2_model(path: str | os.PathLike) -> CT2Model:
    """Index a CTranslate2 ``model.bin`` without reading the weights (see module docstring).

    Parameters
    ----------
    path
        The ``model.bin`` file.

    Returns
    -------
    CT2Model
        Spec name, revision, binary version, variables (name, shape, dtype, byte range) and aliases.

    Raises
    ------
    CT2FormatError
        The file is truncated, has trailing bytes, an unknown binary version or dtype, a count or
        length that overruns the file, a shape that disagrees with its byte size, a duplicate name,
        or an alias to a missing variable.
    """
    path = Path(path)
    if not path.is_file():
        raise CT2FormatError(f"{path}: no such file (a CTranslate2 model directory holds model.bin)")
    size = path.stat().st_size
    with open(path, "rb") as f:
        cur = _Cursor(f, path, size)
        (version,) = cur.unpack("I", "the binary version")
        if version not in BINARY_VERSIONS:
            raise cur.fail(f"binary version {version} (this reader knows versions "
                           f"{', '.join(map(str, BINARY_VERSIONS))}; wrong file type or a newer CTranslate2)")
        spec = cur.string("the spec name")
        (revision,) = cur.unpack("I", "the spec revision")
        model = CT2Model(path=path, binary_version=version, spec=spec, revision=revision)
        (n_vars,) = cur.unpack("I", "the variable count")
        if n_vars * _MIN_VARIABLE_BYTES > cur.left():
            raise cur.fail(f"variable count {n_vars} cannot fit in the {cur.left()} bytes left")
        for k in range(n_vars):
            name = cur.string(f"the name of variable {k}")
            if name in model.variables:
                raise cur.fail(f"variable {name!r} appears twice")
            (rank,) = cur.unpack("B", f"the rank of {name!r}")
            if rank > MAX_RANK:
                raise cur.fail(f"{name!r} has rank {rank} (at most {MAX_RANK})")
            dims = cur.unpack(f"{rank}I", f"the shape of {name!r}") if rank else ()
            (dtype_id,) = cur.unpack("B", f"the dtype of {name!r}")
            if dtype_id not in DTYPES:
                raise cur.fail(f"{name!r} has unknown dtype id {dtype_id} (known: "
                               f"{', '.join(f'{i} {d}' for i, (d, _) in DTYPES.items())})")
            dtype, item = DTYPES[dtype_id]
            (n_bytes,) = cur.unpack("I", f"the byte size of {name!r}")
            expected = int(np.prod(dims, dtype=np.int64)) * item if dims else item
            if n_bytes != expected:
                raise cur.fail(f"{name!r}: shape {tuple(dims)} of {dtype} needs {expected} bytes, the file "
                               f"says {n_bytes}")
            if n_bytes > cur.left():
                raise cur.fail(f"{name!r} claims {n_bytes} bytes, only {cur.left()} left (truncated)")
            model.variables[name] = CT2Variable(name, tuple(int(d) for d in dims), dtype, cur.pos, n_bytes)
            cur.skip(n_bytes)
        (n_aliases,) = cur.unpack("I", "the alias count")
        if n_aliases * _MIN_ALIAS_BYTES > cur.left():
            raise cur.fail(f"alias count {n_aliases} cannot fit in the {cur.left()} bytes left")
        for k in range(n_aliases):
            alias = cur.string(f"alias {k}")
            target = cur.string(f"the target of alias {alias!r}")
            if alias in model.variables or alias in model.aliases:
                raise cur.fail(f"alias {alias!r} clashes with an existing name")
            if target not in model.variables:
                raise cur.fail(f"alias {alias!r} points to missing variable {target!r}")
            model.aliases[alias] = target
        if cur.left():
            raise cur.fail(f"{cur.left()} unexpected bytes after the last alias")
    return model


__all__ = ["BINARY_VERSIONS", "CT2FormatError", "CT2Model", "CT2Variable", "DTYPES", "read_ct2_model"]
