"""``hf``: a local Hugging Face speech encoder (wav2vec 2.0, HuBERT, WavLM), frozen.

``--features hf --encoder PATH`` loads ``AutoModel.from_pretrained(PATH, local_files_only=True)``
from a folder (``config.json`` plus ``model.safetensors`` or ``pytorch_model.bin``, and the
``preprocessor_config.json`` if the model has one): nothing is downloaded. The encoder never
trains: its weights have ``requires_grad`` off and it runs in eval mode under ``no_grad``.

What the GRU-TFM reads:

* default: every hidden state (the transformer's input and each layer's output, L + 1 of
  them) stacked per frame; the model weighs them with learned softmax weights (the SUPERB
  recipe, ``trainer.model.GRUTFM(n_layers=...)``);
* ``--layer N``: hidden state N alone (0 the transformer's input, N the output of layer N).

Padding, as each model family needs it, so that an item's features are the same alone or in
a padded batch (what the feature cache relies on):

* the transformer gets the attention mask (padded frames are zeroed before the positional
  convolution and never attended to), for every family;
* models whose first conv layer has a group norm over time (``feat_extract_norm="group"``:
  wav2vec2-base, hubert-base, wavlm-base(-plus)) take that norm's statistics over each item's
  own valid frames (Hugging Face's recipe for them zero-pads without a mask, so a padded
  item's features would depend on its batch);
* ``do_normalize`` of the preprocessor config (zero mean, unit variance per utterance) uses
  each item's own samples.

The identity (``config.json``'s ``front_end``, the disk cache's key) is the sha256 of the
folder's config, preprocessor config and weight files, and the layer choice.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer._errors import FeatureError
from trainer.features import FrontEnd

#: model types (config.json "model_type") whose padding handling is implemented and tested
FAMILIES = ("wav2vec2", "hubert", "wavlm")
WEIGHT_FILES = ("*.safetensors", "*.bin")
NORMALIZE_EPS = 1e-7  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm


class _ItemGroupNorm(nn.Module):
    """The first conv layer's GroupNorm(C groups, C channels) with each item's statistics
    over its own first ``frame_lengths[b]`` frames (set before every forward)."""

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        self.num_groups, self.eps = norm.num_groups, norm.eps
        self.weight, self.bias = norm.weight, norm.bias
        self.frame_lengths: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        lengths = self.frame_lengths
        if lengths is None or bool((lengths == x.shape[2]).all()):
            return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        out = torch.zeros_like(x)
        for b, n in enumerate(lengths.tolist()):
            out[b, :, :n] = F.group_norm(x[b : b + 1, :, :n], self.num_groups, self.weight, self.bias, self.eps)[0]
        return out


def _sha256_files(paths: list[Path]) -> dict[str, str]:
    from shards.atomic import sha256_file

    return {p.name: sha256_file(p) for p in paths}


class HFEncoderFrontEnd(FrontEnd):
    name = "hf"

    def __init__(self, encoder: str | Path, layer: int | None = None) -> None:
        super().__init__()
        path = Path(encoder)
        if not (path / "config.json").is_file():
            raise FeatureError(f"{path}: not a Hugging Face model folder (expected config.json and model.safetensors "
                               f"or pytorch_model.bin, e.g. a downloaded microsoft/wavlm-base-plus)")
        weights = sorted(p for pattern in WEIGHT_FILES for p in path.glob(pattern))
        if not weights:
            raise FeatureError(f"{path}: no weights (expected model.safetensors or pytorch_model.bin beside config.json)")
        try:
            from transformers import AutoConfig, AutoModel
            from transformers.utils import logging as hf_logging
        except ImportError:
            raise FeatureError("the hf front end needs transformers: pip install 'metricaug[frontends]'") from None
        hf_logging.disable_progress_bar()  # loading a local folder: no bars, no hub notices in the run's log
        hf_logging.set_verbosity_error()
        try:
            config = AutoConfig.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise FeatureError(f"{path / 'config.json'}: not a readable model config ({str(exc).splitlines()[0]})") from None
        if config.model_type not in FAMILIES:
            raise FeatureError(f"{path}: model type {config.model_type!r}; the hf front end knows {', '.join(FAMILIES)}")
        try:
            model = AutoModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise FeatureError(f"{path}: cannot load the model ({str(exc).splitlines()[0]})") from None
        model.eval()
        model.requires_grad_(False)
        self.encoder_path = str(path)
        self.model = model
        self.model_type = config.model_type
        self.n_hidden = config.num_hidden_layers + 1
        if layer is not None and not 0 <= layer < self.n_hidden:
            raise FeatureError(f"--layer {layer}: {path} has hidden states 0..{self.n_hidden - 1}")
        self.layer = layer
        self.layers = self.n_hidden if layer is None else 1
        self.dim = config.hidden_size * self.layers
        self.conv = list(zip(config.conv_kernel, config.conv_stride))
        self.hop = math.prod(s for _, s in self.conv)
        needed = 1
        for kernel, stride in reversed(self.conv):
            needed = (needed - 1) * stride + kernel
        self.min_samples = needed
        preprocessor = path / "preprocessor_config.json"
        self.do_normalize = bool(json.loads(preprocessor.read_text()).get("do_normalize", False)) \
            if preprocessor.is_file() else False
        self.group_norm: _ItemGroupNorm | None = None
        if config.feat_extract_norm == "group":
            first = model.feature_extractor.conv_layers[0]
            self.group_norm = _ItemGroupNorm(first.layer_norm)
            first.layer_norm = self.group_norm
        files = [path / "config.json"] + ([preprocessor] if preprocessor.is_file() else []) + weights
        self._identity = {"name": self.name, "model_type": self.model_type, "hidden_size": config.hidden_size,
                          "hidden_states": self.n_hidden, "layer": "weighted" if layer is None else layer,
                          "do_normalize": self.do_normalize, "sha256": _sha256_files(files)}

    @classmethod
    def create(cls, encoder: str | Path, layer: int | None = None) -> "HFEncoderFrontEnd":
        return cls(encoder, layer)

    def identity(self) -> dict:
        return dict(self._identity)

    def train(self, mode: bool = True) -> "HFEncoderFrontEnd":
        return super().train(False)  # frozen: never dropout, never SpecAugment masking

    def frames_for(self, lengths: Tensor) -> Tensor:
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        for kernel, stride in self.conv:
            lengths = torch.where(lengths >= kernel, (lengths - kernel) // stride + 1, 0)
        return lengths

    def _features(self, wavs: Tensor, lengths: Tensor, frame_lengths: Tensor) -> Tensor:
        valid = torch.arange(wavs.shape[1], device=wavs.device)[None, :] < lengths[:, None]
        if self.do_normalize:  # per item over its own samples, as Wav2Vec2FeatureExtractor
            n = lengths[:, None].to(wavs.dtype)
            mean = (wavs * valid).sum(1, keepdim=True) / n
            var = (((wavs - mean) * valid) ** 2).sum(1, keepdim=True) / n
            wavs = ((wavs - mean) / torch.sqrt(var + NORMALIZE_EPS)).masked_fill(~valid, 0.0)
        if self.group_norm is not None:
            kernel, stride = self.conv[0]
            self.group_norm.frame_lengths = (lengths - kernel) // stride + 1
        try:
            out = self.model(wavs, attention_mask=valid.long(), output_hidden_states=True)
        finally:
            if self.group_norm is not None:
                self.group_norm.frame_lengths = None
        states = out.hidden_states
        if states[0].shape[1] != int(frame_lengths.max()):
            raise FeatureError(f"{self.encoder_path}: the encoder gave {states[0].shape[1]} frames for "
                               f"{int(lengths.max())} samples; expected {int(frame_lengths.max())}")
        if self.layer is not None:
            return states[self.layer]
        return torch.stack(states, dim=2).flatten(2)  # (B, T, layers * hidden)
