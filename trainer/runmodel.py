"""A run's model, one way for everyone: the front end its settings name, the GRU-TFM sized for
it, and the normalisation of its checkpoint. Training (``trainer.train``), ``trainer eval``
and ``bench/`` build and load models through here."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from shards.errors import InputError
from shards.vocab import EMOTIONS
from trainer.features import FeatureError, FrontEnd
from trainer.model import GRUTFM
from trainer.runfolder import BEST, load_checkpoint, read_config, read_epochs


def front_end_for(config: dict, device: str | torch.device = "cpu") -> FrontEnd:
    """The front end a run's settings name (a TrainConfig as a dict, or its config.json;
    old ones name ``features`` and at most a ``checkpoint``); a bad one is an InputError."""
    from trainer.frontends import front_end_of

    try:
        return front_end_of(config, device)
    except FeatureError as exc:
        raise InputError(str(exc)) from None


def new_model(front_end: FrontEnd, hidden: int) -> GRUTFM:
    """The GRU-TFM for ``front_end``'s features (weighing its layers when it stacks several)."""
    return GRUTFM(front_end.dim // front_end.layers, hidden, len(EMOTIONS), n_layers=front_end.layers)


class Normalised:
    """Waveforms -> the model's input: the front end's features, normalised per dimension."""

    def __init__(self, front_end: FrontEnd, mean: torch.Tensor, std: torch.Tensor):
        self.front_end, self.mean, self.std = front_end, mean, std

    def __call__(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.front_end.device
        feats, frames = self.front_end(wavs.to(device), lengths.to(device))
        return (feats - self.mean) / self.std, frames


@dataclass
class RunModel:
    config: dict
    front_end: FrontEnd
    model: GRUTFM
    featurize: Normalised
    kept: dict  # epoch, steps of the checkpoint; steps_total of the run


def load_run_model(run: str | Path, device: torch.device, checkpoint: str = BEST) -> RunModel:
    """The model of ``run``'s ``checkpoint`` (best.pt: the epoch its selection rule kept) on
    ``device``, in eval mode, with its front end and normalisation."""
    run = Path(run)
    if not run.is_dir():
        raise InputError(f"{run}: no such run folder (expected a folder written by 'trainer run')")
    config = read_config(run)
    epochs = read_epochs(run)  # a run with no finished epoch has no model yet: one line
    payload = load_checkpoint(run / checkpoint, device)
    front_end = front_end_for(config, device)
    model = new_model(front_end, config["hidden"]).to(device)
    model.load_state_dict(payload["model"])
    model.eval()
    featurize = Normalised(front_end, payload["norm_mean"].to(device), payload["norm_std"].to(device))
    kept = {"epoch": int(payload["epoch"]), "steps": payload.get("steps"), "steps_total": epochs[-1].get("steps")}
    return RunModel(config, front_end, model, featurize, kept)
