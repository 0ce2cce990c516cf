"""Feature front ends: 16 kHz waveforms in, (batch, frames, dims) features out.

Every front end shares one interface (:class:`FrontEnd`) and is registered in
``trainer.frontends.FRONT_ENDS`` (eGeMAPS in ``trainer.egemaps``, Hugging Face encoders in
``trainer.hf_encoder``). The two defined here:

* ``logmel`` (default, no download): 80 log mel bands, 25 ms Hann window, 10 ms hop.
  Frames are not centred: frame ``t`` covers samples ``[160 t, 160 t + 400)``, so a
  file of ``L`` samples gives ``1 + (L - 400) // 160`` frames and padding never reaches
  a frame of the file.
* ``vqwav2vec``: the conv feature extractor of fairseq's wav2vec / vq-wav2vec
  (``model.feature_extractor(wav)``, 512 dims and a 10 ms hop for ``vq-wav2vec_kmeans.pt``),
  rebuilt in torch from the checkpoint's own settings and weights; fairseq is not needed.

Every front end runs under ``torch.no_grad()`` (not inference mode: the features feed a
model that is trained). Frames past an item's frame length are zero. An item's features
are the same alone and padded in a batch: each group norm takes its statistics over the
item's own valid frames only.
"""
from __future__ import annotations

import ast
import contextlib
import math
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shards.vocab import SAMPLE_RATE
from trainer._errors import FeatureError

__all__ = [
    "SAMPLE_RATE",
    "FeatureError",
    "FrontEnd",
    "LogMelFrontEnd",
    "VqWav2VecFrontEnd",
    "build_front_end",
    "parse_conv_layers",
]


@contextlib.contextmanager
def _full_fp32(device: torch.device) -> Iterator[None]:
    """cuDNN convolutions default to TF32 (10-bit mantissa) on recent GPUs; features
    are meant to match fairseq's float32 numbers and not to depend on the batch shape."""
    if device.type != "cuda":
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # allow_tf32 is being renamed in newer torch
        previous = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.cudnn.allow_tf32 = previous


class FrontEnd(nn.Module):
    """Waveforms ``(B, S)`` at 16 kHz plus lengths ``(B,)`` -> features ``(B, T, D)`` plus
    frame lengths ``(B,)``. ``dim`` is ``D``; ``min_samples`` the shortest input that
    yields one frame; ``hop`` the samples between frames."""

    name = "?"
    dim: int
    hop: int
    min_samples: int
    #: >1: the features are this many stacked layers of dim // layers each, which the model
    #: weighs (a learned softmax-weighted sum)
    layers = 1

    @classmethod
    def create(cls, **options: Any) -> "FrontEnd":
        """An instance from the registry's options (checkpoint, encoder, layer)."""
        return cls(**options)

    def identity(self) -> dict:
        """What this front end computes, by content (config.json's ``front_end``)."""
        return {"name": self.name}

    @property
    def frame_rate(self) -> float:
        return SAMPLE_RATE / self.hop

    def frames_for(self, lengths: Tensor) -> Tensor:
        raise NotImplementedError

    def _features(self, wavs: Tensor, lengths: Tensor, frame_lengths: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        for tensor in list(self.parameters()) + list(self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def forward(self, wavs: Tensor, lengths: Tensor | Sequence[int] | None = None) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            if wavs.dim() == 1:
                wavs = wavs.unsqueeze(0)
            if wavs.dim() != 2:
                raise FeatureError(f"expected waveforms of shape (batch, samples), got {tuple(wavs.shape)}")
            wavs = wavs.to(self.device, torch.float32)
            if lengths is None:
                lengths = torch.full((wavs.shape[0],), wavs.shape[1], dtype=torch.long)
            lengths = torch.as_tensor(lengths, dtype=torch.long).to(self.device)
            if lengths.shape != (wavs.shape[0],):
                raise FeatureError(f"expected one length per waveform ({wavs.shape[0]}), got shape {tuple(lengths.shape)}")
            if bool((lengths > wavs.shape[1]).any()):
                raise FeatureError(f"a length exceeds the padded batch ({wavs.shape[1]} samples)")
            short = (lengths < self.min_samples).nonzero().flatten().tolist()
            if short:
                i = short[0]
                raise FeatureError(
                    f"input {i} has {int(lengths[i])} samples; the {self.name} front end needs at least "
                    f"{self.min_samples} ({self.min_samples / SAMPLE_RATE * 1000:.1f} ms, its receptive field)"
                )
            frame_lengths = self.frames_for(lengths)
            # drop columns no item reaches, so the padded frame count is the longest item's
            wavs = wavs[:, : int(lengths.max())]
            with _full_fp32(wavs.device):
                feats = self._features(wavs, lengths, frame_lengths)
            valid = torch.arange(feats.shape[1], device=feats.device)[None, :] < frame_lengths[:, None]
            feats = feats.masked_fill(~valid[:, :, None], 0.0)
            return feats, frame_lengths


# ------------------------------------------------------------------------ log-mel

class LogMelFrontEnd(FrontEnd):
    """log(mel power + 1e-6): 80 bands (librosa's Slaney filters, 0-8 kHz), 400-sample
    periodic Hann window, hop 160, FFT size 512, no centring."""

    name = "logmel"

    def __init__(self, n_mels: int = 80, win_length: int = 400, hop: int = 160, n_fft: int = 512,
                 floor: float = 1e-6) -> None:
        super().__init__()
        import librosa  # only for the filterbank, computed once

        self.dim = n_mels
        self.hop = hop
        self.win_length = win_length
        self.min_samples = win_length
        self.n_fft = n_fft
        self.floor = floor
        mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=n_fft, n_mels=n_mels)  # (n_mels, n_fft//2+1)
        self.register_buffer("mel_fb", torch.from_numpy(mel).float().T.contiguous(), persistent=False)
        self.register_buffer("window", torch.hann_window(win_length, periodic=True), persistent=False)

    def identity(self) -> dict:
        return {"name": self.name, "n_mels": self.dim, "win_length": self.win_length, "hop": self.hop,
                "n_fft": self.n_fft, "floor": self.floor}

    def frames_for(self, lengths: Tensor) -> Tensor:
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        return torch.where(lengths >= self.win_length, 1 + (lengths - self.win_length) // self.hop, 0)

    def _features(self, wavs: Tensor, lengths: Tensor, frame_lengths: Tensor) -> Tensor:
        frames = wavs.unfold(-1, self.win_length, self.hop) * self.window  # (B, T, win)
        power = torch.fft.rfft(frames, n=self.n_fft).abs().square()  # (B, T, n_fft//2+1)
        return torch.log(power @ self.mel_fb + self.floor)


# --------------------------------------------------------------------- vq-wav2vec

# fairseq's conv_feature_layers strings are Python expressions (fairseq eval()s them),
# e.g. "[(512, 10, 5)] + [(512, 4, 2)] * 3". Only list/tuple/int literals, + and * pass.
def parse_conv_layers(spec: str) -> list[tuple[int, int, int]]:
    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.List):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(ev(e) for e in node.elts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Mult) and isinstance(left, int) and isinstance(right, int):
                return left * right
            if isinstance(node.op, ast.Mult) and isinstance(left, (list, tuple)) and isinstance(right, int) and 0 <= right <= 1000:
                return left * right
            if isinstance(node.op, ast.Add) and type(left) is type(right):
                return left + right
        raise ValueError(f"unsupported expression {ast.dump(node)[:60]}")

    layers = ev(ast.parse(str(spec), mode="eval"))
    if not isinstance(layers, list) or not layers or not all(
        isinstance(t, tuple) and len(t) == 3 and all(isinstance(v, int) and v > 0 for v in t) for t in layers
    ):
        raise ValueError("expected a non-empty list of (dim, kernel, stride) tuples of positive ints")
    return [tuple(t) for t in layers]  # type: ignore[misc]


# Defaults for settings a checkpoint omits: argparse-era fairseq (the published
# checkpoints) and hydra-era fairseq (Wav2VecConfig) differ on log_compression.
_ARGS_DEFAULTS = {
    "conv_feature_layers": "[(512, 10, 5), (512, 8, 4), (512, 4, 2), (512, 4, 2), (512, 4, 2)]",
    "activation": "relu",
    "log_compression": False,
    "skip_connections_feat": False,
    "residual_scale": 0.5,
    "non_affine_group_norm": False,
}
_CFG_DEFAULTS = dict(
    _ARGS_DEFAULTS,
    conv_feature_layers="[(512, 10, 5), (512, 8, 4), (512, 4, 2), (512, 4, 2), (512, 4, 2), (512, 1, 1), (512, 1, 1), (512, 1, 1)]",
    log_compression=True,
)
#: vq-wav2vec_kmeans.pt's feature extractor settings (fairseq's vq-wav2vec recipe).
VQ_WAV2VEC_SETTINGS = {
    "conv_feature_layers": "[(512, 10, 5), (512, 8, 4), (512, 4, 2), (512, 4, 2), (512, 4, 2), (512, 1, 1), (512, 1, 1), (512, 1, 1)]",
    "activation": "gelu",
    "log_compression": False,
    "skip_connections_feat": False,
    "residual_scale": 0.5,
    "non_affine_group_norm": False,
}
_GROUP_NORM_EPS = 1e-5


def _masked_group_norm(x: Tensor, lengths: Tensor, padded: bool, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """fairseq's Fp32GroupNorm(1, C): one mean / variance per item over all channels and
    frames, here over the item's first ``lengths[b]`` frames only. Each padded item goes
    through the stock kernel on its own valid frames: a vectorised masked version differs
    from it by float32 rounding, which eight layers amplify to ~1e-5."""
    if not padded:  # every item fills the batch
        return F.group_norm(x, 1, weight, bias, _GROUP_NORM_EPS)
    out = torch.zeros_like(x)
    for b, length in enumerate(lengths.tolist()):
        if length > 0:
            out[b, :, :length] = F.group_norm(x[b : b + 1, :, :length], 1, weight, bias, _GROUP_NORM_EPS)[0]
    return out


class VqWav2VecFrontEnd(FrontEnd):
    """fairseq's ``ConvFeatureExtractionModel`` (wav2vec / vq-wav2vec): per layer
    Conv1d(no bias) -> GroupNorm(1 group) -> ReLU/GELU, optional skip connections scaled
    by sqrt(residual_scale), optional log compression log(|x| + 1). Output ``z``, as
    ``model.feature_extractor(wav)`` returns it, transposed to (B, T, C)."""

    name = "vqwav2vec"

    @classmethod
    def create(cls, checkpoint: str | Path) -> "VqWav2VecFrontEnd":
        return cls.from_checkpoint(checkpoint)

    def identity(self) -> dict:
        from shards.atomic import sha256_file

        path = getattr(self, "checkpoint_path", None)
        return {"name": self.name, "layers": [list(t) for t in self.layers_spec], "activation": self.activation,
                "log_compression": self.log_compression, "skip_connections": self.skip_connections,
                "checkpoint_sha256": sha256_file(path) if path else None}

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__()
        settings = dict(VQ_WAV2VEC_SETTINGS if settings is None else settings)
        self.layers_spec = parse_conv_layers(settings["conv_feature_layers"])
        activation = str(settings["activation"])
        if activation not in ("relu", "gelu"):
            raise ValueError(f"unknown activation {activation!r} (fairseq knows relu and gelu)")
        self.activation = activation
        self.log_compression = bool(settings["log_compression"])
        self.skip_connections = bool(settings["skip_connections_feat"])
        self.residual_scale = math.sqrt(float(settings["residual_scale"]))
        self.affine = not bool(settings["non_affine_group_norm"])
        self.convs = nn.ModuleList()
        self.norm_weights = nn.ParameterList()
        self.norm_biases = nn.ParameterList()
        in_dim = 1
        for dim, kernel, stride in self.layers_spec:
            self.convs.append(nn.Conv1d(in_dim, dim, kernel, stride=stride, bias=False))
            if self.affine:
                self.norm_weights.append(nn.Parameter(torch.ones(dim)))
                self.norm_biases.append(nn.Parameter(torch.zeros(dim)))
            in_dim = dim
        self.requires_grad_(False)
        self.eval()
        self.dim = self.layers_spec[-1][0]
        self.hop = math.prod(s for _, _, s in self.layers_spec)
        needed = 1  # walk back from one output frame
        for _, kernel, stride in reversed(self.layers_spec):
            needed = (needed - 1) * stride + kernel
        self.min_samples = needed

    # -- checkpoint ------------------------------------------------------------------
    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """fairseq's state-dict keys for this extractor and their shapes."""
        shapes: dict[str, tuple[int, ...]] = {}
        in_dim = 1
        for i, (dim, kernel, _stride) in enumerate(self.layers_spec):
            shapes[f"feature_extractor.conv_layers.{i}.0.weight"] = (dim, in_dim, kernel)
            if self.affine:
                shapes[f"feature_extractor.conv_layers.{i}.2.weight"] = (dim,)
                shapes[f"feature_extractor.conv_layers.{i}.2.bias"] = (dim,)
            in_dim = dim
        return shapes

    def load_fairseq_state(self, state: dict[str, Tensor], source: str = "checkpoint") -> None:
        """Copy the ``feature_extractor.*`` weights; every other key is ignored."""
        expected = self.expected_shapes()
        present = {k: v for k, v in state.items() if k.startswith("feature_extractor.")}
        missing = [k for k in expected if k not in present]
        if missing:
            raise FeatureError(
                f"{source}: {missing[0]} missing ({len(missing)} feature_extractor keys missing); expected the conv "
                f"feature extractor of a wav2vec / vq-wav2vec model with layers {self.layers_spec}"
            )
        unexpected = sorted(k for k in present if k not in expected)
        if unexpected:
            raise FeatureError(
                f"{source}: unexpected key {unexpected[0]} for a feature extractor with layers {self.layers_spec}"
                f"{' and non-affine group norm' if not self.affine else ''}"
            )
        for key, shape in expected.items():
            if tuple(present[key].shape) != shape:
                raise FeatureError(
                    f"{source}: {key} has shape {tuple(present[key].shape)}, but conv_feature_layers "
                    f"{self.layers_spec} expects {shape}"
                )
        for i, conv in enumerate(self.convs):
            conv.weight.copy_(present[f"feature_extractor.conv_layers.{i}.0.weight"].float())
            if self.affine:
                self.norm_weights[i].copy_(present[f"feature_extractor.conv_layers.{i}.2.weight"].float())
                self.norm_biases[i].copy_(present[f"feature_extractor.conv_layers.{i}.2.bias"].float())

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "VqWav2VecFrontEnd":
        from trainer.fairseq_ckpt import load_fairseq_checkpoint

        ckpt = load_fairseq_checkpoint(path)
        arch = ckpt.model_settings.get("arch", ckpt.model_settings.get("_name"))
        if arch is not None and arch != "wav2vec":
            raise FeatureError(f"{path}: model architecture {arch!r}; expected a wav2vec / vq-wav2vec checkpoint ('wav2vec')")
        defaults = _ARGS_DEFAULTS if ckpt.settings_form == "args" else _CFG_DEFAULTS
        settings = {k: ckpt.model_settings.get(k, d) for k, d in defaults.items()}
        for k, d in defaults.items():
            if settings[k] is None:
                settings[k] = d
        try:
            front_end = cls(settings)
        except (ValueError, SyntaxError) as exc:
            raise FeatureError(f"{path}: unusable feature extractor settings ({exc})") from None
        front_end.load_fairseq_state(ckpt.state_dict, source=str(path))
        front_end.checkpoint_path = str(path)
        return front_end

    # -- computation -----------------------------------------------------------------
    def frames_for(self, lengths: Tensor) -> Tensor:
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        for _, kernel, stride in self.layers_spec:
            lengths = torch.where(lengths >= kernel, (lengths - kernel) // stride + 1, 0)
        return lengths

    def _features(self, wavs: Tensor, lengths: Tensor, frame_lengths: Tensor) -> Tensor:
        x = wavs.unsqueeze(1)  # (B, 1, S)
        act = F.gelu if self.activation == "gelu" else F.relu
        for i, (conv, (_dim, kernel, stride)) in enumerate(zip(self.convs, self.layers_spec)):
            in_lengths = lengths
            lengths = (lengths - kernel) // stride + 1
            residual = x
            x = conv(x)
            padded = bool((lengths != x.shape[2]).any())
            weight = self.norm_weights[i] if self.affine else None
            bias = self.norm_biases[i] if self.affine else None
            x = act(_masked_group_norm(x, lengths, padded, weight, bias))
            if self.skip_connections and x.shape[1] == residual.shape[1]:
                x = (x + self._subsample(residual, in_lengths, lengths, x.shape[2])) * self.residual_scale
        if self.log_compression:
            x = torch.log1p(x.abs())  # fairseq: (|x| + 1).log()
        return x.transpose(1, 2)

    @staticmethod
    def _subsample(residual: Tensor, in_lengths: Tensor, out_lengths: Tensor, out_frames: int) -> Tensor:
        # fairseq takes every (r_tsz // tsz)-th input frame, with r_tsz / tsz the lengths
        # of *this* item; in a padded batch that step can differ between items.
        steps = in_lengths // out_lengths.clamp(min=1)
        padded_step = residual.shape[2] // out_frames
        if bool((steps == padded_step).all()):
            return residual[..., ::padded_step][..., :out_frames]
        index = torch.arange(out_frames, device=residual.device)[None, :] * steps[:, None]
        index = index.clamp(max=residual.shape[2] - 1)  # frames past an item's length are discarded
        return torch.gather(residual, 2, index[:, None, :].expand(-1, residual.shape[1], -1))


# ------------------------------------------------------------------------ factory

def build_front_end(name: str | None = None, checkpoint: str | Path | None = None, device: str | torch.device = "cpu",
                    **options: Any) -> FrontEnd:
    """The registered front end ``name`` (see ``trainer.frontends.build_front_end``)."""
    from trainer.frontends import DEFAULT_FRONT_END, build_front_end as build

    return build(name or DEFAULT_FRONT_END, checkpoint, device, **options)
