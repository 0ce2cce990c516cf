"""The store's vocabulary: every name, constant and path pattern that a stored sample,
the table or a file name depends on. Defined once here; every other package imports it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from shards.metrics import BUILTIN_METRICS

#: Sample rate of all stored audio (and of every waveform the pipeline handles), in Hz.
SAMPLE_RATE = 16000

#: The four emotion classes of the paper, in label-index order.
EMOTIONS: tuple[str, ...] = ("angry", "happy", "neutral", "sad")
NEUTRAL = "neutral"
#: Canonical split names (MSP "Test1" -> "test", "Test2" -> "test2"; MELD "dev" -> "validation").
SPLITS: tuple[str, ...] = ("train", "validation", "test", "test2")
TRAIN, VALIDATION = "train", "validation"
#: Noise kinds: MUSAN noise/music/speech, and "unseen" for test-only noise (ESC-50).
NOISE_KINDS: tuple[str, ...] = ("noise", "music", "speech", "unseen")

#: The built-in distortion metrics stored per mix (declared in shards.metrics, which also
#: holds any metric registered at run time: ``shards.metrics.metric_names()``).
METRICS: tuple[str, ...] = tuple(spec.name for spec in BUILTIN_METRICS)
#: PESQ's failure value in the authors' code (pesq's on_error=RETURN_VALUES); treated as missing.
PESQ_FAILED = -1.0

#: Subsets (the ``subset`` column and the first part of a shard name).
CLEAN_SUBSET = "clean"  # every utterance once, unmixed
SUPERSET_SUBSET = "superset"  # the 30N mixes of train and validation
UNSEEN_SUBSET = "test_unseen"  # test utterances with unseen (ESC-50) noise
TEST_SUBSET_PREFIX = "test_"  # every test set's subset: test_snr<tag>, test_unseen
FIXED_SNR_SUBSET = "fixed_snr"  # the Fixed-SNR baseline: train utterances at 0, 5, 10 dB
COPYPASTE_SUBSET = "copypaste"  # the CopyPaste baseline's 0.8N concatenated train utterances, clean
COPYPASTE_MIX_SUBSET = "copypaste_mix"  # CopyPaste: the N originals and 0.8N composites at 0, 5, 10 dB
#: utt_id (and clean key) of CopyPaste composite ``i``: cp_000123
COPYPASTE_ID = "cp_{:06d}"
SUPERSET_SPLITS: tuple[str, ...] = (TRAIN, VALIDATION)
#: A recipe store's noise: every noise file its recipe mixes use, as mixed (16 kHz, 16-bit
#: WAV), once per stage; its rows' split is the stage's name.
NOISE_SUBSET = "noise"

#: A recipe store's room impulse responses: each RIR a reverb or far-field recipe convolves
#: with, once per store, keyed by its content (``rir_key``), in a shard of its own
#: (``shards/rir-<rir id>-000000.tar``, shared by every stage), float32 samples as ``.npy``.
RIR_SUBSET = "rir"
RIR_EXT = "npy"
#: A recipe store's babble talkers from ``--babble-root``: each speech recording once per
#: store, keyed by its content (``babble_key``), in a shard of its own
#: (``shards/babble-<babble id>-000000.tar``, shared by every stage), as a FLAC of its 16 kHz
#: 16-bit samples (exactly what an audio build mixes).
BABBLE_SUBSET = "babble"
#: The subsets that hold what recipes mix from, not samples of the corpus.
SOURCE_SUBSETS: tuple[str, ...] = (NOISE_SUBSET, RIR_SUBSET, BABBLE_SUBSET)

#: How a stage stores its mixes (``prep ... --mixes``): each mix's audio in shards, or each
#: mix as a table row (its recipe) rendered on read from the stored clean and noise.
AUDIO_LAYOUT, RECIPE_LAYOUT = "audio", "recipe"
LAYOUTS: tuple[str, ...] = (AUDIO_LAYOUT, RECIPE_LAYOUT)
#: Payload of a stored noise: a PCM_16 WAV member (memory-mapped by readers).
NOISE_EXT = "wav"

# Files and folders of a store OUT/<corpus>/
MANIFEST = "manifest.json"
TABLE = "metadata.parquet"
REJECTS = "rejects.csv"
SHARDS_DIR = "shards"
PLANS_DIR = "plans"
LEVELS_DIR = "levels"
LOCK = ".lock"
SHARD_SUFFIX = ".tar"  # shards/<name>.tar
ROWS_SUFFIX = ".rows.json"  # shards/<name>.rows.json: the shard's rows, written by the build
STORE_FORMAT = "metricaug-store/1"


def snr_tag(snr: float) -> str:
    """An SNR as it appears in subset names and keys: 2.5 -> "2p5", -5 -> "m5"."""
    return f"{snr:g}".replace(".", "p").replace("-", "m")


def snr_subset(snr: float) -> str:
    """The subset of a seen-noise test set at one exact SNR: ``test_snr5``."""
    return f"{TEST_SUBSET_PREFIX}snr{snr_tag(snr)}"


def shard_name(subset: str, split: str, index: int) -> str:
    return f"{subset}-{split}-{index:06d}"


def shard_relpath(name: str) -> str:
    """A shard's path relative to the store, as the table and manifest record it."""
    return f"{SHARDS_DIR}/{name}{SHARD_SUFFIX}"


def shard_path(store: Path, name: str) -> Path:
    return Path(store) / SHARDS_DIR / f"{name}{SHARD_SUFFIX}"


def safe_id(text: str) -> str:
    """Make an id usable as a WebDataset key: webdataset splits a member name at its
    first '.', and '/' would make a folder."""
    return "".join(c if (c.isalnum() or c in "-_") else "_" for c in text)


def noise_key(noise_id: str) -> str:
    """Key of a stored noise in a recipe store: its content id (``__noise__0123456789abcdef``),
    so the stages whose mixes use the same noise share one copy."""
    return f"__noise__{safe_id(noise_id)}"


def noise_shard_name(noise_id: str) -> str:
    """The shard of one stored noise: named by its content, so every stage shares it."""
    return shard_name(NOISE_SUBSET, safe_id(noise_id), 0)


def stage_noise_key(stage: str, noise_type: str, noise_file: str) -> str:
    """Key of a noise as stores built before noise was stored once per store hold it: one
    copy per stage (``__noise__superset__music__music-fma-0001``)."""
    return f"__noise__{stage}__{noise_type}__{safe_id(noise_file)}"


#: In a recipe stage's plan and manifest entry: the noise its recipes mix with, as
#: [noise type, noise file, content id] lists (a recipe names its noise by type and file).
NOISE_SOURCES = "noise_sources"


def noise_keys_of_stage(stage: str, stage_info: dict) -> Callable[[str, str], str]:
    """(noise type, noise file) -> key of the stored noise a recipe of ``stage`` mixes with:
    the content key its stage lists, else the stage's own copy (a store built before)."""
    listed = {(t, f): noise_key(i) for t, f, i in stage_info.get(NOISE_SOURCES, [])}
    return lambda noise_type, noise_file: (listed.get((noise_type, noise_file))
                                           or stage_noise_key(stage, noise_type, noise_file))


def rir_key(rir_id: str) -> str:
    """Key of a stored RIR in a recipe store: its content id (``__rir__0123456789abcdef``)."""
    return f"__rir__{safe_id(rir_id)}"


def rir_shard_name(rir_id: str) -> str:
    """The shard of one stored RIR: named by its content, so every stage shares it."""
    return shard_name(RIR_SUBSET, safe_id(rir_id), 0)


#: The key prefix of a stored babble recording (also the talker id its babbles record).
BABBLE_KEY_PREFIX = "__babble__"


def babble_key(babble_id: str) -> str:
    """Key (and talker id) of a ``--babble-root`` recording: its content id
    (``__babble__0123456789abcdef``)."""
    return f"{BABBLE_KEY_PREFIX}{safe_id(babble_id)}"


def babble_shard_name(babble_id: str) -> str:
    """The shard of one stored babble recording: named by its content, so every stage shares it."""
    return shard_name(BABBLE_SUBSET, safe_id(babble_id), 0)


def is_babble_shard(relpath: str) -> bool:
    """Whether a shard (relative path, as the table names it) holds a stored babble recording."""
    return relpath.startswith(f"{SHARDS_DIR}/{BABBLE_SUBSET}-")


def payload_ext(subset: str) -> str:
    """The member extension of a sample's payload: a stored noise's WAV, an RIR's npy, else FLAC."""
    return {NOISE_SUBSET: NOISE_EXT, RIR_SUBSET: RIR_EXT}.get(subset, "flac")


def rows_relpath(name: str) -> str:
    """A recipe part's path relative to the store: its rows file (it has no tar)."""
    return f"{SHARDS_DIR}/{name}{ROWS_SUFFIX}"


def levels_stem(metric: str, quant: str, n_levels: int) -> str:
    """``levels/<stem>.json`` / ``.parquet`` / ``.png``: one quantizer's level index."""
    return f"{metric}-{quant}-k{n_levels}"
