"""The front-end registry: one home per front end, as ``trainer.strategies`` is for strategies.

``FRONT_ENDS`` maps a name to a :class:`FrontEndSpec`: the class that computes it (a
:class:`trainer.features.FrontEnd`, imported on first use) and what callers need without
building one:

* ``help``, ``frames_per_second`` and ``dims``: the CLI's ``--features`` choices and help;
* ``options``: which of :data:`FRONT_END_OPTIONS` it takes (``--checkpoint``, ``--encoder``,
  ``--layer``; TrainConfig and config.json keys of the same names), ``required`` the ones it
  cannot do without;
* ``disk_cacheable``: its features of the fixed inputs are worth an on-disk cache
  (``--feature-cache``): expensive to compute, and not trained.

An instance says what it computes by content with ``identity()`` (settings, checksums of the
weights): ``config.json``'s ``front_end``, which refuses a resume with another one and keys the
disk cache; and its exact ``dim``, ``hop`` and ``layers``.

Adding a front end: subclass ``FrontEnd`` (``frames_for``, ``_features``; padding must not change
an item's frames), and register a spec with :func:`register_front_end`. Nothing here imports
torch: ``trainer --help`` and the report stay light.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Options a front end may take: the TrainConfig / config.json key and the CLI's help.
FRONT_END_OPTIONS = {
    "checkpoint": "fairseq wav2vec / vq-wav2vec checkpoint (vq-wav2vec_kmeans.pt)",
    "encoder": "a local Hugging Face speech encoder folder (config.json + weights: wav2vec 2.0, HuBERT, WavLM); "
               "nothing is downloaded",
    "layer": "the one encoder hidden state to read (0: the input of the first transformer layer, N: the output "
             "of layer N); default: a learned softmax-weighted sum of all of them",
}


@dataclass(frozen=True)
class FrontEndSpec:
    name: str
    implementation: Any  # "module:Class", imported on first use, or the class itself
    help: str
    dims: str
    frames_per_second: float | None = None
    options: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    disk_cacheable: bool = False

    def load(self):
        if isinstance(self.implementation, str):
            module, _, cls = self.implementation.partition(":")
            return getattr(importlib.import_module(module), cls)
        return self.implementation

    def describe(self) -> str:
        """One line for the CLI: what it is, its dimension and frame rate, what it needs."""
        rate = f"{self.frames_per_second:g} frames/s" if self.frames_per_second else "the model's frame rate"
        needs = "".join(f", needs --{o}" for o in self.required)
        return f"{self.name}: {self.help} ({self.dims} dims, {rate}{needs})"


FRONT_ENDS: dict[str, FrontEndSpec] = {}

#: the front end of a run that names none (every run before the registry, and the CLI's default)
DEFAULT_FRONT_END = "logmel"


def register_front_end(spec: FrontEndSpec) -> FrontEndSpec:
    unknown = [o for o in spec.options + spec.required if o not in FRONT_END_OPTIONS]
    if unknown:
        raise ValueError(f"front end {spec.name!r}: unknown option(s) {unknown}; known: {list(FRONT_END_OPTIONS)}")
    FRONT_ENDS[spec.name] = spec
    return spec


for _spec in (
    FrontEndSpec("logmel", "trainer.features:LogMelFrontEnd", "80 log mel bands, no download", "80", 100.0),
    FrontEndSpec("egemaps", "trainer.egemaps:EgemapsFrontEnd",
                 "openSMILE eGeMAPSv02 low-level descriptors, the field's hand-crafted reference set", "25", 100.0,
                 disk_cacheable=True),
    FrontEndSpec("hf", "trainer.hf_encoder:HFEncoderFrontEnd",
                 "a local Hugging Face speech encoder (wav2vec 2.0, HuBERT, WavLM), frozen",
                 "hidden size x layers", 50.0, options=("encoder", "layer"), required=("encoder",),
                 disk_cacheable=True),
    FrontEndSpec("vqwav2vec", "trainer.features:VqWav2VecFrontEnd",
                 "the conv feature extractor of fairseq's vq-wav2vec", "512", 100.0,
                 options=("checkpoint",), required=("checkpoint",), disk_cacheable=True),
):
    register_front_end(_spec)


def features_help() -> str:
    return "; ".join(spec.describe() for spec in FRONT_ENDS.values())


def option_help(option: str) -> str:
    users = [name for name, spec in FRONT_ENDS.items() if option in spec.options]
    text = FRONT_END_OPTIONS[option]
    return f"{text[0].upper()}{text[1:]}; for --features {' / '.join(users) or '(none)'}."


def options_of(config: dict) -> dict[str, Any]:
    """The front-end options set in a TrainConfig dict or a run's config.json (runs from before
    the registry have ``checkpoint`` at most)."""
    return {k: config[k] for k in FRONT_END_OPTIONS if config.get(k) is not None}


def front_end_label(config: dict) -> str:
    """A run's front end for a report column: empty for the default, else its name, with the
    chosen encoder layer where set (runs on other features are not pooled with log-mel runs)."""
    name = config.get("features") or DEFAULT_FRONT_END
    if name == DEFAULT_FRONT_END:
        return ""
    return name if config.get("layer") is None else f"{name} L{config['layer']}"


def build_front_end(name: str = DEFAULT_FRONT_END, checkpoint: str | Path | None = None, device="cpu", **options: Any):
    """The registered front end ``name`` with its ``options`` (``checkpoint``, ``encoder``,
    ``layer``), on ``device``, in eval mode."""
    import torch

    from trainer._errors import FeatureError

    if checkpoint is not None:
        options["checkpoint"] = checkpoint
    options = {k: v for k, v in options.items() if v is not None}
    if name not in FRONT_ENDS:
        raise FeatureError(f"unknown front end {name!r}; expected one of {', '.join(FRONT_ENDS)}")
    spec = FRONT_ENDS[name]
    for option, value in options.items():
        if option not in spec.options:
            raise FeatureError(f"{value}: the {name} front end takes no --{option}")
    for option in spec.required:
        if option not in options:
            article = "an" if option[0] in "aeiou" else "a"
            raise FeatureError(f"the {name} front end needs {article} {option}: --{option}, "
                               f"{FRONT_END_OPTIONS[option]} (see README)")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise FeatureError(f"unknown device {device!r} ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FeatureError(f"device {device} requested, but torch sees no CUDA GPU")
    front_end = spec.load().create(**options)
    return front_end.to(device).eval()


def front_end_of(config: dict, device="cpu"):
    """The front end a run's settings name (a TrainConfig dict or its config.json)."""
    return build_front_end(config.get("features", DEFAULT_FRONT_END), device=device, **options_of(config))
