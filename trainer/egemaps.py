"""``egemaps``: openSMILE's eGeMAPSv02 low-level descriptors as frame features.

The 25 LLDs of the extended Geneva Minimalistic Acoustic Parameter Set (loudness, spectral
slopes and ratios, MFCC 1-4, F0, jitter, shimmer, HNR, formants...), one frame every 10 ms,
exactly as ``opensmile.Smile(eGeMAPSv02, LowLevelDescriptors).process_signal`` gives them.
openSMILE runs on the CPU, one item at a time on its own samples, so padding never reaches
a frame; the frames go to the model's device afterwards. openSMILE's LLD frames need 60 ms
of audio (its pitch window): a file of ``L >= 960`` samples gives ``1 + (L - 800) // 160``
frames (shorter ones get one frame of NaN from openSMILE and are refused here).

Needs the ``frontends`` extra (``pip install metricaug[frontends]``: the ``opensmile`` wheel,
which ships the openSMILE binary; no download at run time).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from shards.vocab import SAMPLE_RATE
from trainer._errors import FeatureError
from trainer.features import FrontEnd

HOP = 160
#: samples of openSMILE's first LLD frame (its longest window, 60 ms, ends at 800 + HOP)
FIRST_FRAME = 800


def _smile():
    try:
        import opensmile
    except ImportError:
        raise FeatureError("the egemaps front end needs openSMILE: pip install 'metricaug[frontends]' "
                           "(or pip install opensmile)") from None
    return opensmile, opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                      feature_level=opensmile.FeatureLevel.LowLevelDescriptors)


class EgemapsFrontEnd(FrontEnd):
    name = "egemaps"

    def __init__(self) -> None:
        super().__init__()
        self._opensmile, self.smile = _smile()
        self.feature_names = list(self.smile.feature_names)
        self.dim = len(self.feature_names)
        self.hop = HOP
        self.min_samples = FIRST_FRAME + HOP

    def identity(self) -> dict:
        return {"name": self.name, "feature_set": "eGeMAPSv02", "level": "LowLevelDescriptors",
                "opensmile": self._opensmile.__version__, "features": self.feature_names}

    def frames_for(self, lengths: Tensor) -> Tensor:
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        return torch.where(lengths >= self.min_samples, 1 + (lengths - FIRST_FRAME) // HOP, 0)

    def lld(self, wav: np.ndarray) -> np.ndarray:
        """openSMILE's LLD frames of one waveform: (frames, 25) float32."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Segment too short": refused before we get here
            frame = self.smile.process_signal(np.ascontiguousarray(wav, dtype=np.float32), SAMPLE_RATE)
        return np.array(frame.to_numpy(dtype=np.float32))  # writable: torch takes it as is

    def _features(self, wavs: Tensor, lengths: Tensor, frame_lengths: Tensor) -> Tensor:
        out = torch.zeros(wavs.shape[0], int(frame_lengths.max()), self.dim)
        cpu = wavs.detach().cpu().numpy()
        for b, (length, frames) in enumerate(zip(lengths.tolist(), frame_lengths.tolist())):
            lld = self.lld(cpu[b, :length])
            if lld.shape != (frames, self.dim) or not np.isfinite(lld).all():
                raise FeatureError(f"openSMILE gave {lld.shape[0]} eGeMAPS frames (finite: {np.isfinite(lld).all()}) "
                                   f"for {length} samples; expected {frames}: another openSMILE version?")
            out[b, :frames] = torch.from_numpy(lld)
        return out.to(wavs.device)
