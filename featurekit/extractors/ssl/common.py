"""Machinery shared by the pretrained-encoder extractors (no torch, transformers or ctranslate2 here).

:class:`EncoderExtractor` turns a backend's "encode these chunks" into featurekit's outputs:
long signals are cut into overlapping chunks whose frame states are stitched back together, and
the stitched states give the LLDs (one layer) and the native functionals (mean and standard
deviation over the frames of every layer). Also here: model tags for column names, weight-file
hashing for cache keys, local model-directory resolution, length-grouped batching.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from featurekit.audio import ShortAudioWarning
from featurekit.extractors.base import Extractor, Frames, Vector

# weight-file digests, memoised by (path, size, mtime_ns): each file's bytes are read once per process
_WEIGHT_DIGESTS: dict[tuple[str, int, int], str] = {}
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack")
OFFLINE_HINT = (
    "make a local copy where a network is available, e.g. `huggingface-cli download {model} --local-dir "
    "DIR` or `AutoModel.from_pretrained({model!r}).save_pretrained(DIR)` together with "
    "`AutoFeatureExtractor.from_pretrained({model!r}).save_pretrained(DIR)`, and pass model=DIR")


class ModelError(ValueError):
    """A model directory or model id cannot be used by an encoder extractor."""


def model_tag(model: str, tag: str | None = None) -> str:
    """Short column-name-safe tag for a model: ``tag`` if given, else the model id's last component.

    Letters, digits and ``-`` only (underscores separate the parts of a column name), at most 40
    characters; e.g. ``facebook/wav2vec2-base`` -> ``wav2vec2-base``, ``.../tiny.en`` -> ``tiny-en``.
    """
    raw = tag if tag else Path(str(model).rstrip("/\\")).name or str(model)
    # a hub cache snapshot: models--org--name/snapshots/<sha>
    if not tag and re.fullmatch(r"[0-9a-f]{40}", raw):
        parent = Path(str(model).rstrip("/\\")).parent.parent.name
        raw = parent.split("--")[-1] if parent.startswith("models--") else raw[:12]
    out = re.sub(r"[^A-Za-z0-9]+", "-", raw).strip("-")[:40].strip("-")
    if not out:
        raise ValueError(f"cannot make a column tag from model {model!r} (tag={tag!r}); pass tag='...'")
    return out


def weight_files(directory: Path, patterns: tuple[str, ...] = WEIGHT_PATTERNS) -> list[Path]:
    """Weight files of a model directory (non-recursive), sorted by name."""
    files = {p for pat in patterns for p in directory.glob(pat) if p.is_file()}
    return sorted(files, key=lambda p: p.name)


def file_digest(path: Path) -> str:
    """BLAKE2b-128 of a file's bytes, computed once per (path, size, mtime) in this process."""
    st = path.stat()
    k = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if k not in _WEIGHT_DIGESTS:
        h = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _WEIGHT_DIGESTS[k] = h.hexdigest()
    return _WEIGHT_DIGESTS[k]


def weights_digest(files: list[Path]) -> dict[str, str]:
    """``{file name: digest}`` for the weight files (see :func:`file_digest`)."""
    return {p.name: file_digest(p) for p in files}


def read_json(path: Path) -> dict:
    """A JSON file as a dict, with an error naming the file when it is malformed."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"{path}: not valid JSON ({err})") from None


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def resolve_model_dir(model: str | os.PathLike | None, *, extractor: str, required: str,
                      allow_patterns: list[str] | None = None) -> Path:
    """A local model directory for ``model`` (a directory, or a hub id already in the local cache).

    A hub id that is not cached locally is fetched with ``huggingface_hub`` only when the hub is
    not switched off (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``); every failure ends in an
    error that says how to supply a local copy.

    Parameters
    ----------
    model
        Directory path or hub id (``org/name``).
    extractor
        Extractor name, for messages.
    required
        A file the directory must hold (``config.json``, ``model.bin``).
    allow_patterns
        Files to fetch when downloading from the hub.
    """
    if model is None or str(model).strip() == "":
        raise ModelError(f"{extractor}: no model given; pass model=DIR (a local model directory), e.g. "
                         f"params={{'{extractor}': {{'model': '/path/to/model'}}}}")
    text = str(model)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / required).is_file():
            raise ModelError(f"{extractor}: {path} is not a model directory (no {required})")
        return path
    if path.exists():
        raise ModelError(f"{extractor}: {path} is a file; pass the model directory that holds {required}")
    looks_like_path = (text.startswith((".", "/", "~", "\\")) or text.count("/") > 1
                       or (os.sep == "\\" and ":" in text))
    if looks_like_path or not re.fullmatch(r"[\w.\-]+(/[\w.\-]+)?", text):
        raise ModelError(f"{extractor}: model directory {text} does not exist")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ModelError(f"{extractor}: {text!r} is not a local directory and huggingface_hub is not "
                         f"installed; {OFFLINE_HINT.format(model=text)}") from None
    try:  # already in the local hub cache: no network needed
        return Path(snapshot_download(text, local_files_only=True, allow_patterns=allow_patterns))
    except Exception:  # noqa: BLE001  (any miss means: not cached)
        pass
    if _offline():
        raise ModelError(f"{extractor}: {text!r} is not a local directory, not in the local hub cache, and "
                         f"the hub is offline (HF_HUB_OFFLINE); {OFFLINE_HINT.format(model=text)}")
    try:
        return Path(snapshot_download(text, allow_patterns=allow_patterns))
    except Exception as err:  # noqa: BLE001
        raise ModelError(f"{extractor}: cannot fetch {text!r} from the hub ({type(err).__name__}: {err}); "
                         f"{OFFLINE_HINT.format(model=text)}") from None


#: Weight formats that unpickle (and can therefore run code when loaded without ``weights_only``).
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")


def check_folder_confined(path: Path, *, who: str) -> list[Path]:
    """Refuse a model folder that could run code or reach outside itself; return its files.

    Checked from the listing alone, before any file is read: no entry (at any depth) may be a
    symbolic link resolving outside ``path``, and no Python source (``*.py``: remote code a
    ``trust_remote_code`` loader would import) may be present. ``who`` prefixes the messages.
    """
    root = path.resolve()
    files = []
    for entry in sorted(path.rglob("*")):
        if entry.is_symlink():
            target = entry.resolve()
            if target != root and root not in target.parents:
                raise ModelError(f"{who}: {path}: {entry.relative_to(path)} is a symbolic link to {target}, "
                                 f"outside the model folder; refused (a model folder must be self-contained)")
        if entry.suffix == ".py":
            raise ModelError(f"{who}: {path}: holds Python code ({entry.relative_to(path)}); refused: "
                             f"a model folder must not carry code (featurekit never uses trust_remote_code)")
        if entry.is_file():
            files.append(entry)
    return files


def check_safetensors_only(path: Path, *, who: str) -> list[Path]:
    """The folder's ``*.safetensors`` weights; refuse pickle-format weights (``*.bin``, ``*.pt``, ...)."""
    pickled = weight_files(path, PICKLE_PATTERNS)
    if pickled:
        names = ", ".join(p.name for p in pickled)
        raise ModelError(f"{who}: {path}: holds pickle-format weights ({names}); refused because loading "
                         f"them can run code. Convert them to safetensors where you trust them, e.g. "
                         f"AutoModel.from_pretrained(DIR).save_pretrained(DIR2, safe_serialization=True)")
    files = weight_files(path, ("*.safetensors",))
    if not files:
        raise ModelError(f"{who}: {path}: no *.safetensors weights")
    return files


# -- chunking -----------------------------------------------------------------------------------
def plan_chunks(n: int, chunk: int, overlap: int, hop: int) -> list[tuple[int, int]]:
    """Sample ranges ``[start, end)`` of overlapping chunks covering ``n`` samples.

    Starts are multiples of ``hop`` (so every chunk's frames fall on the global frame grid);
    consecutive chunks overlap by at least ``overlap`` samples; the last chunk ends at ``n`` and is
    at least ``chunk - hop`` long. A signal of at most ``chunk`` samples is one chunk.
    """
    if n <= chunk:
        return [(0, n)]
    step = ((chunk - overlap) // hop) * hop
    if step <= 0:
        raise ValueError(f"chunk ({chunk} samples) must exceed overlap ({overlap}) by at least one hop "
                         f"({hop})")
    starts = list(range(0, n - chunk, step))
    last = -(-(n - chunk) // hop) * hop
    if last > starts[-1]:
        starts.append(last)
    return [(s, min(s + chunk, n)) for s in starts]


def stitch(states: list[np.ndarray], offsets: list[int]) -> np.ndarray:
    """Join chunk states ``(..., T_k, D)`` whose first frames are global frames ``offsets``.

    Where chunks overlap, each side keeps the frames nearer its own centre (the boundary is the
    middle of the overlap), so every frame comes from a chunk that saw context on both sides.
    """
    if len(states) == 1:
        return states[0]
    ends = [o + s.shape[-2] for o, s in zip(offsets, states)]
    bounds = [offsets[0]]
    for k in range(1, len(states)):
        lo, hi = offsets[k], ends[k - 1]
        bounds.append(min(max((lo + hi) // 2, lo), max(hi, lo)))
    bounds.append(ends[-1])
    parts = []
    for k, s in enumerate(states):
        a, b = bounds[k] - offsets[k], min(bounds[k + 1], ends[k]) - offsets[k]
        parts.append(s[..., max(a, 0):max(b, 0), :])
    return np.concatenate(parts, axis=-2)


def group_by_length(lengths: list[int], batch_size: int, *, exact: bool) -> list[list[int]]:
    """Indices grouped into batches of similar (``exact``: identical) length, longest first."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and len(groups[-1]) < batch_size and (not exact or lengths[groups[-1][0]] == lengths[i]):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def pool_mean_std(states: np.ndarray) -> np.ndarray:
    """``(L, T, D)`` frame states -> ``(L, 2, D)``: mean and (population) std over frames, float64 sums."""
    x = states.astype(np.float64, copy=False)
    return np.stack([x.mean(axis=1), x.std(axis=1)], axis=1)


class EncoderExtractor(Extractor):
    """Base of pretrained-encoder extractors (see module docstring).

    Subclasses provide :meth:`_info` (model facts from its files, without loading it),
    :meth:`_encode` (chunks -> frame states of the requested layers) and the class constants.
    Parameters every subclass has: ``model``, ``tag``, ``chunk_s``, ``overlap_s``, ``batch_size``.
    """

    has_native = True
    has_lld = True
    key_excludes: ClassVar[tuple[str, ...]] = ("batch_size",)  # do not change the output
    sample_rate: ClassVar[int] = 16000

    # -- facts and identity ---------------------------------------------------------------------
    def _info(self) -> dict[str, Any]:
        """Model facts: ``layers`` (the hidden-state layer numbers output, 0 = embeddings), ``dim``,
        ``hop`` (samples per frame), ``min_samples`` (receptive field), ``max_chunk`` and
        ``default_chunk`` (samples), ``time_offset`` (s, centre of frame 0), ``config`` and
        ``weights`` (both enter the cache key)."""
        raise NotImplementedError

    def _encode(self, chunks: list[np.ndarray], layers: list[int]) -> list[np.ndarray]:
        """Frame states ``(len(layers), T_k, D)`` float32 of each chunk's frames covering its audio."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """Model facts read from its files (cached on the instance)."""
        cached = self.__dict__.get("_cache_info")
        if cached is None:
            cached = self._info()
            self._cache_info = cached
        return cached

    def model_tag(self) -> str:
        """The short model tag used in column names."""
        return model_tag(self.model, self.tag)

    def _runtime_key(self) -> dict[str, Any]:
        return {}

    def key(self) -> dict[str, Any]:
        k = super().key()
        k["params"] = {p: v for p, v in k["params"].items() if p not in self.key_excludes}
        info = self.info()
        k["model"] = {"config": info["config"], "weights": info["weights"], "runtime": self._runtime_key()}
        return k

    # -- layers and names ------------------------------------------------------------------------
    def _layer_numbers(self) -> list[int]:
        return list(self.info()["layers"])

    def _check_sr(self, sr: int) -> None:
        if sr != self.sample_rate:
            raise ValueError(f"{self.name}: the encoder needs {self.sample_rate} Hz audio, got {sr} Hz "
                             f"(use AudioOptions(sample_rate={self.sample_rate}))")

    def _prefix(self, layer: int) -> str:
        return f"{self.name}_{self.model_tag()}_L{layer:02d}"

    def native_names(self) -> list[str]:
        dim = self.info()["dim"]
        return [f"{self._prefix(layer)}_{stat}_{d:04d}" for layer in self._layer_numbers()
                for stat in ("mean", "std") for d in range(dim)]

    def _lld_layer(self) -> int:
        """The layer number of the LLD output (``lld_layer``, negative counts from the last)."""
        layers = self._layer_numbers()
        want = getattr(self, "lld_layer", -1)
        if isinstance(want, bool) or not isinstance(want, (int, np.integer)):
            raise ValueError(f"{self.name}: lld_layer must be an integer, got {want!r}")
        if want in layers:
            return int(want)
        if -len(layers) <= want < 0:
            return layers[want]
        raise ValueError(f"{self.name}: lld_layer={want} is out of range for {self.model}: it outputs "
                         f"layer(s) {layers[0]}..{layers[-1]} ({len(layers)} hidden-state layers"
                         f"{', 0 = embeddings' if layers[0] == 0 else ''}); negative values count from "
                         f"the last")

    def lld_names(self) -> list[str]:
        prefix = self._prefix(self._lld_layer())
        return [f"{prefix}_{d:04d}" for d in range(self.info()["dim"])]

    # -- computation -----------------------------------------------------------------------------
    def _chunk_params(self) -> tuple[int, int]:
        info = self.info()
        chunk = (info["default_chunk"] if self.chunk_s is None
                 else int(round(float(self.chunk_s) * self.sample_rate)))
        overlap = int(round(float(self.overlap_s) * self.sample_rate))
        if chunk > info["max_chunk"]:
            raise ValueError(f"{self.name}: chunk_s={self.chunk_s} exceeds the longest input {self.model} "
                             f"takes ({info['max_chunk'] / self.sample_rate:g} s)")
        if chunk < 2 * info["min_samples"] + info["hop"]:
            raise ValueError(f"{self.name}: chunk_s={self.chunk_s} is too short for this encoder")
        if overlap < 0 or chunk - overlap < info["hop"]:
            raise ValueError(f"{self.name}: need 0 <= overlap_s < chunk_s (overlap_s={self.overlap_s}, "
                             f"chunk {chunk / self.sample_rate:g} s)")
        return chunk, overlap

    def _prepare(self, signal: np.ndarray) -> np.ndarray:
        """Per-utterance preprocessing before chunking (e.g. normalisation); float32 1-D."""
        return np.asarray(signal, dtype=np.float32)

    def _states(self, signals: list[np.ndarray], sr: int, layers: list[int]) -> list[np.ndarray]:
        """Stitched frame states ``(len(layers), T, D)`` of every signal."""
        self._check_sr(sr)
        info = self.info()
        chunk, overlap = self._chunk_params()
        hop, min_samples = info["hop"], info["min_samples"]
        pieces: list[np.ndarray] = []
        owners: list[tuple[int, int]] = []  # (signal index, frame offset)
        for i, sig in enumerate(signals):
            x = self._prepare(sig)
            if x.ndim != 1:
                raise ValueError(f"{self.name}: expected a 1-D mono signal, got shape {x.shape}")
            if len(x) < min_samples:
                warnings.warn(f"{self.name}: {len(x)} samples is shorter than the receptive field of "
                              f"{self.model_tag()} ({min_samples} samples); zero-padded",
                              ShortAudioWarning, stacklevel=3)
                x = np.pad(x, (0, min_samples - len(x)))
            for a, b in plan_chunks(len(x), chunk, overlap, hop):
                pieces.append(x[a:b])
                owners.append((i, a // hop))
        encoded = self._encode(pieces, layers)
        out: list[np.ndarray] = []
        for i in range(len(signals)):
            mine = [(off, st) for (j, off), st in zip(owners, encoded) if j == i]
            joined = stitch([st for _, st in mine], [off for off, _ in mine])
            out.append(joined.astype(np.float32, copy=False))
        return out

    def native_batch(self, signals: list[np.ndarray], sr: int) -> list[Vector]:
        layers = self._layer_numbers()
        names = self.native_names()
        states = self._states(signals, sr, layers)
        # Extraction asks for native functionals and then LLDs of the same signal objects: keep the
        # LLD layer's states of this batch (one layer, small) so the second call needs no encoding.
        try:
            row = layers.index(self._lld_layer())
            self._cache_last = (list(signals), sr, [s[row:row + 1] for s in states])
        except ValueError:
            self._cache_last = None
        return [Vector(values=pool_mean_std(s).reshape(-1).astype(np.float32), names=names) for s in states]

    def lld_batch(self, signals: list[np.ndarray], sr: int) -> list[Frames]:
        layer = self._lld_layer()
        names = self.lld_names()
        info = self.info()
        last = self.__dict__.pop("_cache_last", None)
        if (last is not None and last[1] == sr and len(last[0]) == len(signals)
                and all(a is b for a, b in zip(last[0], signals))):
            states = last[2]
        else:
            states = self._states(signals, sr, [layer])
        out = []
        for s in states:
            times = np.arange(s.shape[1]) * info["hop"] / self.sample_rate + info["time_offset"]
            out.append(Frames(values=s[0], times=times.astype(np.float64), names=names))
        return out

    def native(self, signal: np.ndarray, sr: int) -> Vector:
        return self.native_batch([signal], sr)[0]

    def lld(self, signal: np.ndarray, sr: int) -> Frames:
        return self.lld_batch([signal], sr)[0]
