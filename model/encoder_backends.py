"""The runtimes behind :class:`model.encoder.SentenceEncoder`: torch (CUDA in bfloat16, or the CPU) and
ONNX Runtime on an int8 export (the CPU default). Both map word-piece ids and attention masks to the
mean-pooled, L2-normalised sentence vectors of sentence-transformers.
"""

from __future__ import annotations

import logging
import os
import uuid
import warnings
from pathlib import Path

import numpy as np
import torch

from model.encoder import INSTALL_HINT, EncoderSpec, Tuned
from model.errors import EncoderUnavailable

__all__ = ["OnnxBackend", "TorchBackend", "torch_model"]

log = logging.getLogger(__name__)

CPU_BATCH = 64  # texts per encoder call on the CPU (2 cores: 124 docs/s at 32, 109 at 256 with ONNX int8)


class _MeanPooled(torch.nn.Module):
    """The transformer with sentence-transformers' pooling: ids, mask (batch, tokens) → unit rows (batch, dim)."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def pooled(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask: (batch, tokens) int64 → the mean of the unpadded pieces' last hidden states (batch, dim)."""
        hidden = self.transformer(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask: (batch, tokens) int64 → (batch, dim) float32, L2-normalised."""
        return torch.nn.functional.normalize(self.pooled(ids, mask), dim=1)


def torch_model(wanted: EncoderSpec, tuned: Tuned | None = None) -> _MeanPooled:
    """The package's transformer with mean pooling, its weights replaced by ``tuned``'s when given; eval mode."""
    try:
        import transformers
    except ImportError as err:
        raise EncoderUnavailable(f"the {wanted.name!r} encoder needs transformers: {INSTALL_HINT}") from err
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    model = _MeanPooled(transformers.AutoModel.from_pretrained(wanted.model_dir()))
    if tuned is not None:
        from safetensors.torch import load_file

        tuned.check()
        state = load_file(str(tuned.path))
        model.transformer.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


class TorchBackend:
    """The torch model on ``device``: weights in bfloat16 on CUDA (cast once, not per call as autocast
    would), float32 on the CPU."""

    def __init__(self, wanted: EncoderSpec, device: torch.device, tuned: Tuned | None = None) -> None:
        self.device = device
        model = torch_model(wanted, tuned).to(device)
        self.model = model.to(torch.bfloat16) if device.type == "cuda" else model
        # A GPU is kept busy only by big batches (H200: 5,900 docs/s at 256, 10,800 at 1,024 on Reuters).
        self.batch_size = 512 if device.type == "cuda" else CPU_BATCH

    def embed(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Ids, mask (batch, tokens) int64 → unit sentence vectors (batch, dim) float32."""
        with torch.inference_mode():
            vectors = self.model(torch.as_tensor(ids, device=self.device), torch.as_tensor(mask, device=self.device))
        return vectors.float().cpu().numpy()


class OnnxBackend:
    """ONNX Runtime on the int8 export of the model, on the CPU."""

    def __init__(self, wanted: EncoderSpec, cache_dir: Path, tuned: Tuned | None = None) -> None:
        import onnxruntime

        path = _int8_export(wanted, cache_dir, tuned)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the same thread budget as the model
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.batch_size = CPU_BATCH

    def embed(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Ids, mask (batch, tokens) int64 → unit sentence vectors (batch, dim) float32."""
        return np.asarray(self.session.run(None, {"ids": ids, "mask": mask})[0], dtype=np.float32)


def _int8_export(wanted: EncoderSpec, cache_dir: Path, tuned: Tuned | None = None) -> Path:
    """The cached int8 ONNX file of ``wanted`` (with ``tuned``'s weights), exported and quantised on first use."""
    weights = f"-tuned-{tuned.digest}" if tuned else ""
    path = cache_dir / f"{wanted.name}-{wanted.version()}{weights}-int8.onnx"
    if path.exists():
        return path
    from onnxruntime.quantization import QuantType, quantize_dynamic

    log.info("exporting the %s encoder%s to ONNX (int8) into %s, once", wanted.name,
             f" (fine-tuned {tuned.digest})" if tuned else "", cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = cache_dir / f".{path.name}.{uuid.uuid4().hex[:8]}"
    fp32, int8 = staging.with_suffix(".fp32"), staging.with_suffix(".int8")
    try:
        model = torch_model(wanted, tuned)
        example = (torch.ones(2, 8, dtype=torch.int64), torch.ones(2, 8, dtype=torch.int64))
        dynamic = {"ids": {0: "batch", 1: "tokens"}, "mask": {0: "batch", 1: "tokens"}, "vectors": {0: "batch"}}
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracing notes
            warnings.simplefilter("ignore")
            torch.onnx.export(model, example, str(fp32), input_names=["ids", "mask"], output_names=["vectors"],
                              dynamic_axes=dynamic, opset_version=17, dynamo=False)
        logging.disable(logging.WARNING)  # the quantiser logs a line per tensor, and advice, to the root logger
        try:
            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            logging.disable(logging.NOTSET)
        os.replace(int8, path)  # atomic: concurrent processes each export, the last rename wins whole
    finally:
        for leftover in (fp32, int8):
            leftover.unlink(missing_ok=True)
    return path
