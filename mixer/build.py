"""Building a store: one joblib task per shard, then the table and manifest.

A worker reads one clean utterance at a time, only the noise stretches its mixes need
(seek and read), scores all mixes of the utterance together (clean-side work once) and
streams samples into the shard's temporary tar. Memory therefore stays flat whatever
the corpus size.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import re
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from joblib.externals.loky.process_executor import TerminatedWorkerError

from mixer.audio import AudioError, load_audio, read_segment
from mixer.distortions import make_mix
from mixer.mixing import MixError, fit_noise, fit_pcm16
from mixer.babble import babble_digest, load_babble
from mixer.plan import (
    SOURCE_TASKS, BabbleShardTask, MixSpec, NoiseShardTask, RirRef, RirShardTask, ShardTask, TalkerRef, UttJob,
)
from mixer.rir import load_rir, rir_digest
from shards.mixing import float_to_pcm16, noise_stretch, pcm16_to_float, stretch_offset
from shards.reader import NoiseLocation, decode_flac, release_process_caches, stored_noise, stored_rir
from scoring.metrics import score_mixes
from shards import store as st
from shards.atomic import write_json_atomic
from shards.cores import peak_rss_bytes, usable_cores
from shards.errors import InputError
from shards.metrics import MetricSpec, adopt, metric_specs
from shards.vocab import (
    BABBLE_KEY_PREFIX, BABBLE_SUBSET, NOISE_EXT, NOISE_SUBSET, RECIPE_LAYOUT, RIR_EXT, RIR_SUBSET, SAMPLE_RATE,
    NOISE_SOURCES, SHARDS_DIR, noise_key, rir_key, rows_relpath, shard_path, shard_relpath,
)
from shards.writer import ShardWriter, encode_flac, encode_json, encode_npy, encode_wav_pcm16

#: Tests only: a worker that starts the shard named in this variable kills itself with
#: SIGKILL, as the kernel's out-of-memory killer would (tests/test_faults_store.py).
TEST_SIGKILL_SHARD_ENV = "METRICAUG_TEST_SIGKILL_SHARD"


class BuildError(Exception):
    """The build could not finish for a reason outside the user's input (a worker killed by
    the operating system). The message is one line: what happened, the likely cause, and
    that running the same command again resumes."""


class OwnerGone(Exception):
    """Raised in a worker whose build no longer holds the store lock (killed, or replaced by
    a later build): the worker drops its shard instead of publishing it."""


def stamp_inputs(tasks: list[ShardTask]) -> list[ShardTask]:
    """The tasks with ``inputs`` set to (path, size, mtime_ns) of every file they read, so
    that an input replaced in place changes the fingerprint of the shards that use it.
    Size and mtime (what make and rsync compare) cost one stat per file; a content hash
    would read the whole corpus on every run. A missing file stamps as (-1, -1)."""
    stamps: dict[str, tuple[str, int, int]] = {}

    def stamp(path: str) -> tuple[str, int, int]:
        if path not in stamps:
            try:
                info = os.stat(path)
                stamps[path] = (path, int(info.st_size), int(info.st_mtime_ns))
            except OSError:
                stamps[path] = (path, -1, -1)
        return stamps[path]

    return [dataclasses.replace(t, inputs=tuple(stamp(p) for p in t.input_paths())) for t in tasks]


def noise_offset(spec: MixSpec, num_samples: int) -> int:
    """Where a mix's noise stretch starts: its seeded share of the free room, or 0 for a
    noise no longer than the speech (then repeated)."""
    return stretch_offset(spec.offset_fraction, spec.noise_samples, num_samples)


def read_noise(spec: MixSpec, num_samples: int) -> tuple[np.ndarray, int]:
    """The noise stretch for one mix, read from disk without loading the whole file."""
    offset = noise_offset(spec, num_samples)
    if spec.noise_samples - num_samples > 0:
        segment = read_segment(spec.noise_path, offset, num_samples)
    else:  # shorter than the speech: the whole file, repeated
        segment = read_segment(spec.noise_path, 0, max(spec.noise_samples, 1))
    return fit_noise(segment, num_samples), offset


def stored_noise_stretch(store: Path, noise_index: dict, spec: MixSpec, num_samples: int) -> tuple[np.ndarray, int]:
    """A recipe part's noise stretch for one mix: cut from the 16-bit noise the store holds
    for it (exactly what every reader mixes with), at the offset an audio build would use."""
    location = noise_index.get((spec.noise_type, spec.noise_id))
    if location is None:
        raise MixError(f"noise {spec.noise_id} was not stored (see rejects.csv)")
    pcm = stored_noise(store, location)
    offset = noise_offset(spec, num_samples)
    return pcm16_to_float(noise_stretch(pcm, num_samples, offset)), offset


def job_audio(job: UttJob) -> tuple[np.ndarray, list[list] | None]:
    """A job's clean signal before 16-bit fitting, and for a composite (CopyPaste) its
    parts as [utt_id, start, length] in samples at 16 kHz (None for an utterance)."""
    if not job.parts:
        return load_audio(job.utt.path, SAMPLE_RATE), None
    segments, spans = [], []
    for part in job.parts:
        wav = load_audio(part.path, SAMPLE_RATE)
        start, length = part.span(wav.size)
        segments.append(wav[start:start + length])
        spans.append([part.utt_id, start, length])
    return np.concatenate(segments), spans


def _no_metrics() -> dict:
    """A sample's metric fields when nothing scored it: NaN for every registered metric."""
    return {spec.column: np.nan for spec in metric_specs()}


def score_fields(clean: np.ndarray, mixes: list[np.ndarray], metrics: tuple[str, ...]) -> list[dict]:
    """Each mix's metric fields (by table column) and errors."""
    if not metrics or not mixes:
        return [{**_no_metrics(), "errors": ""} for _ in mixes]
    scores = score_mixes(clean, mixes, fs=SAMPLE_RATE, metrics=metrics)
    return [{**{spec.column: float(score[spec.name]) for spec in metric_specs()}, "errors": score["errors"]}
            for score in scores]


def build_shard(store_dir: str, task: ShardTask | NoiseShardTask, owner: str | None = None,
                metrics: tuple[MetricSpec, ...] = (), noise_index: dict | None = None) -> dict:
    """Write one shard and its rows. Runs in a worker process. ``owner`` is the store lock's
    token of the build that sent the task: the worker stops, and publishes nothing, as soon
    as that build no longer holds the lock (see shards.store.lock_owned_by). ``metrics``: the
    sending build's metric registry, adopted here (a metric registered at run time)."""
    from threadpoolctl import threadpool_limits

    adopt(metrics)
    # one BLAS thread: a multi-threaded matmul sums in another order, and the metrics'
    # last bits (so the shard bytes) would depend on how many workers share the cores
    _exit_with_parent(owner)
    with threadpool_limits(limits=1):
        if isinstance(task, NoiseShardTask):
            return _build_noise_shard(Path(store_dir), task, owner)
        if isinstance(task, RirShardTask):
            return _build_rir_shard(Path(store_dir), task, owner)
        if isinstance(task, BabbleShardTask):
            return _build_babble_shard(Path(store_dir), task, owner)
        if task.layout == RECIPE_LAYOUT:
            try:
                return _build_recipe_part(Path(store_dir), task, owner, noise_index or {})
            finally:
                release_process_caches()  # the next part mixes other utterances and noise
        return _build_shard(Path(store_dir), task, owner)


_WATCHING_PARENT = False


def _exit_with_parent(owner: str | None) -> None:
    """In a worker started by the build process itself (loky): a daemon thread ends this
    process as soon as the build process is gone, so that a build killed alone (kill -9 PID,
    the OOM killer) leaves no worker computing, or idling, for minutes. Workers of other
    processes (Dask) stay up; their tasks stop at the next lock check (_check_owner)."""
    global _WATCHING_PARENT
    parent = os.getppid()
    if _WATCHING_PARENT or owner is None or st.lock_holder_pid(owner) != parent:
        return
    _WATCHING_PARENT = True

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)  # reparented: the build died; its lock is gone, nothing to publish

    threading.Thread(target=watch, name="exit-with-build", daemon=True).start()


def _check_owner(store: Path, owner: str | None, name: str) -> None:
    if owner is not None and not st.lock_owned_by(store, owner):
        raise OwnerGone(f"{shard_relpath(name)}: the build that started it no longer holds the store lock")


def _test_sigkill(task) -> None:
    """Tests only: die as the OOM killer would make a worker die, in the named shard (after
    its temporary tar exists, so that the one-line error can name it)."""
    if os.environ.get(TEST_SIGKILL_SHARD_ENV) == task.name:
        os.kill(os.getpid(), signal.SIGKILL)


def _result(task, rows: list, rejects: list, started: float) -> dict:
    return {
        "name": task.name, "planned": task.num_samples, "samples": len(rows), "rejects": len(rejects),
        "seconds": time.perf_counter() - started, "pid": os.getpid(),
        "peak_rss_bytes": peak_rss_bytes(),
    }


def _build_recipe_part(store: Path, task: ShardTask, owner: str | None, noise_index: dict) -> dict:
    """A recipe part: its samples' rows (recipe and metrics), mixed and scored from the
    stored noise exactly as a reader renders them; no audio is written. The rows file is
    the part: published atomically, it marks the part complete."""
    started = time.perf_counter()
    rows: list[dict] = []
    rejects: list[dict] = []
    _test_sigkill(task)
    noise = lambda spec, n: stored_noise_stretch(store, noise_index, spec, n)  # noqa: E731
    sources = MixSources(noise, lambda ref: stored_rir_of(store, noise_index, ref),
                         lambda ref: stored_babble_of(store, noise_index, ref))
    for job in task.jobs:
        _check_owner(store, owner, task.name)
        for key, _, fields in _job_samples(task, job, rejects, sources=sources):
            rows.append({**fields, "key": key, "shard": rows_relpath(task.name), "flac_offset": -1, "flac_size": -1,
                         "json_offset": -1, "json_size": -1})
    _check_owner(store, owner, task.name)
    write_json_atomic(st.rows_path(store, task.name), st.recipe_rows_document(task, rows, rejects), compact=True)
    return _result(task, rows, rejects, started)


def _build_noise_shard(store: Path, task: NoiseShardTask, owner: str | None) -> dict:
    """One noise of a recipe store: the file decoded whole, resampled to 16 kHz and put on
    the 16-bit grid (scaled as a whole where it would clip), a PCM_16 WAV member keyed by
    its content id."""
    import soundfile as sf

    started = time.perf_counter()
    converted = 0

    def fill(writer: ShardWriter, rows: list[dict], rejects: list[dict]) -> None:
        nonlocal converted
        _check_owner(store, owner, task.name)
        try:
            info = sf.info(task.path)
            converted = int(info.samplerate != SAMPLE_RATE or info.subtype not in _EXACT_NOISE_SUBTYPES)
        except Exception:  # noqa: BLE001  (load_audio below says what is wrong with it)
            pass
        try:
            wav, gain = fit_pcm16(load_audio(task.path, SAMPLE_RATE))
        except AudioError as exc:
            rejects.append({"file": exc.path, "reason": f"noise for recipes: {exc.reason}"})
            return
        fields = _source_fields(task.split, NOISE_SUBSET, wav.size, gain, noise_type=task.noise_type,
                                noise_file=task.noise_file)
        rows.append(_add_member(writer, task, noise_key(task.noise_id), NOISE_EXT,
                                encode_wav_pcm16(float_to_pcm16(wav), SAMPLE_RATE), fields))

    rows, rejects = _write_shard(store, task, owner, fill)
    return {**_result(task, rows, rejects, started), "converted": converted}


def _source_fields(split: str, subset: str, num_samples: int, gain: float, noise_type: str = "", noise_file: str = "",
                   **extra) -> dict:
    """The fields of a stored source (a noise, an RIR): no utterance, no mix, no metric."""
    return {"corpus": "", "utt_id": "", "speaker": "", "label": "", "split": split, "subset": subset,
            "num_samples": int(num_samples), "noise_type": noise_type, "noise_file": noise_file, "noise_offset": -1,
            "snr_bin": -1, "snr_target": np.nan, "snr_achieved": np.nan, "noise_gain": 0.0, "gain": gain, **extra,
            **_no_metrics(), "errors": ""}


def stored_rir_of(store: Path, index: dict, ref: RirRef) -> np.ndarray:
    """A recipe part's RIR: the samples the store holds under its content id."""
    location = index.get(rir_key(ref.rir_id))
    if location is None:
        raise MixError(f"room impulse response {ref.rir_file} was not stored (see rejects.csv)")
    return stored_rir(store, location)


def _build_rir_shard(store: Path, task: RirShardTask, owner: str | None) -> dict:
    """One RIR of a recipe store: channel 0 at 16 kHz, float32, exactly the samples an audio
    build convolves with, as an ``.npy`` member keyed by its content id."""
    started = time.perf_counter()

    def fill(writer: ShardWriter, rows: list[dict], rejects: list[dict]) -> None:
        _check_owner(store, owner, task.name)
        try:
            rir = rir_from_file(RirRef(task.rir_id, task.rir_file, task.path, task.t60_s, task.drr_db))
        except (AudioError, MixError) as exc:
            rejects.append({"file": task.path, "reason": f"room impulse response: {getattr(exc, 'reason', exc)}"})
            return
        fields = _source_fields(task.split, RIR_SUBSET, rir.size, 1.0, kind=RIR_SUBSET, rir_id=task.rir_id,
                                rir_file=task.rir_file, t60_s=task.t60_s, drr_db=task.drr_db)
        rows.append(_add_member(writer, task, rir_key(task.rir_id), RIR_EXT, encode_npy(rir), fields))

    rows, rejects = _write_shard(store, task, owner, fill)
    return _result(task, rows, rejects, started)


def stored_babble_of(store: Path, index: dict, ref: TalkerRef) -> np.ndarray | None:
    """A recipe part's ``--babble-root`` talker: the samples the store holds under its content
    key (None for a talker of the corpus, read from its file as the clean shard stores it)."""
    if not ref.utt_id.startswith(BABBLE_KEY_PREFIX):
        return None
    location = index.get(ref.utt_id)
    if location is None:
        raise MixError(f"babble recording {ref.speaker} was not stored (see rejects.csv)")
    with open(store / location.shard, "rb") as f:
        data = os.pread(f.fileno(), location.size, location.offset)
    if len(data) != location.size:
        raise MixError(f"babble recording {ref.speaker}: {location.shard} is truncated")
    return decode_flac(data)


def babble_from_file(ref: TalkerRef) -> np.ndarray:
    """A ``--babble-root`` talker read from its file; one whose samples are no longer those it
    was listed with cannot be mixed (the next run lists it again)."""
    pcm = load_babble(ref.path)
    if BABBLE_KEY_PREFIX + babble_digest(pcm) != ref.utt_id:
        raise MixError(f"babble recording {ref.speaker} changed since it was listed")
    return pcm


def _build_babble_shard(store: Path, task: BabbleShardTask, owner: str | None) -> dict:
    """One ``--babble-root`` recording of a recipe store: its 16 kHz 16-bit samples, exactly
    those an audio build mixes, as a FLAC member keyed by its content id."""
    started = time.perf_counter()

    def fill(writer: ShardWriter, rows: list[dict], rejects: list[dict]) -> None:
        _check_owner(store, owner, task.name)
        ref = TalkerRef(BABBLE_KEY_PREFIX + task.babble_id, task.path, task.babble_file, 0.0)
        try:
            pcm = babble_from_file(ref)
        except (AudioError, MixError) as exc:
            rejects.append({"file": task.path, "reason": f"babble talker: {getattr(exc, 'reason', exc)}"})
            return
        fields = _source_fields(task.split, BABBLE_SUBSET, pcm.size, 1.0, noise_file=task.babble_file)
        rows.append(_add_member(writer, task, ref.utt_id, "flac", encode_flac(pcm, SAMPLE_RATE), fields))

    rows, rejects = _write_shard(store, task, owner, fill)
    return _result(task, rows, rejects, started)


#: Noise files whose stored 16-bit samples are exactly what an audio build reads (16 kHz, at
#: most 16-bit integer PCM): a recipe store of them is byte for byte the audio store.
_EXACT_NOISE_SUBTYPES = ("PCM_16", "PCM_S8", "PCM_U8")


def noise_index_of(store: Path, tasks: list, noise_sources: list[list[str]] = ()) -> dict:
    """Where a stage's stored sources lie, from the rows of its (built) source shards: source
    key -> location, and (noise type, noise file) -> location of the noise a recipe of that
    name mixes with (``noise_sources``: the stage's [type, file, content id] lists)."""
    index: dict = {}
    for task in tasks:
        if isinstance(task, SOURCE_TASKS):
            part = st.read_rows(store, task.name) or {"rows": []}
            for row in part["rows"]:
                index[row["key"]] = NoiseLocation(row["shard"], int(row["flac_offset"]), int(row["flac_size"]))
    for noise_type, noise_file, noise_id in noise_sources:
        location = index.get(noise_key(noise_id))
        if location is not None:  # absent: the file was rejected (rejects.csv says why)
            index[(noise_type, noise_file)] = location
    return index


def _write_shard(store: Path, task, owner: str | None, fill) -> tuple[list[dict], list[dict]]:
    """Write one shard's tar: ``fill(writer, rows, rejects)`` adds its members, then the shard
    is published (or, on any error or interruption, its temporary removed). (rows, rejects)."""
    writer = ShardWriter(shard_path(store, task.name))
    rows: list[dict] = []
    rejects: list[dict] = []
    try:
        fill(writer, rows, rejects)
        digest = writer.close()
        _publish(store, task, owner, writer, digest, rows, rejects)
    except BaseException:
        writer.abort()
        raise
    return rows, rejects


def _build_shard(store: Path, task: ShardTask, owner: str | None = None) -> dict:
    started = time.perf_counter()

    def fill(writer: ShardWriter, rows: list[dict], rejects: list[dict]) -> None:
        _test_sigkill(task)
        sources = MixSources()
        for job in task.jobs:
            _check_owner(store, owner, task.name)  # the build was killed: stop with it
            for key, wav, fields in _job_samples(task, job, rejects, sources=sources):
                rows.append(_write_sample(writer, task, key, wav, fields))

    rows, rejects = _write_shard(store, task, owner, fill)
    return _result(task, rows, rejects, started)


def _job_samples(task: ShardTask, job: UttJob, rejects: list[dict],
                 noise_for=read_noise, sources: "MixSources | None" = None) -> list[tuple[str, np.ndarray, dict]]:
    """(key, audio, JSON fields) of every sample of one job: its clean signal, or its mixes.
    What cannot be read or mixed becomes a reject. ``noise_for(spec, num_samples)`` gives a
    mix's noise stretch and offset (from the noise file; a recipe part: from the store)."""
    utt = job.utt
    try:
        raw, parts = job_audio(job)
        # scaled as a whole, never clipped, where it would not fit 16 bits
        clean, gain = fit_pcm16(raw)
    except AudioError as exc:
        if job.parts:
            rejects.append({"file": exc.path, "reason": f"composite {utt.utt_id}: {exc.reason}"})
        else:
            rejects.append({"file": utt.path, "reason": exc.reason})
        return []
    base = {
        "corpus": utt.corpus, "utt_id": utt.utt_id, "speaker": utt.speaker, "label": utt.label,
        "split": utt.split, "subset": task.subset, "num_samples": int(clean.size),
    }
    if parts is not None:  # a composite's JSON (and rows file) says what it is made of
        base["parts"] = parts
    if not job.mixes:
        return [(utt.utt_id, clean, {**base, "noise_type": "", "noise_file": "", "noise_offset": -1,
                 "snr_bin": -1, "snr_target": np.nan, "snr_achieved": np.nan, "noise_gain": 0.0,
                 "gain": gain, **_no_metrics(), "errors": ""})]
    made = []
    sources = sources or MixSources(noise_for)
    for spec in job.mixes:
        try:
            made.append((spec, *make_mix(spec, clean, sources)))
        except (AudioError, MixError) as exc:
            reason = exc.reason if isinstance(exc, AudioError) else str(exc)
            source = exc.path if isinstance(exc, AudioError) else mix_source_file(spec)
            rejects.append({"file": source, "reason": f"mix {spec.key}: {reason}"})
    scores = score_fields(clean, [wav for _, wav, _ in made], task.metrics)
    return [(spec.key, wav, {**base, **fields, **score}) for (spec, wav, fields), score in zip(made, scores)]


def mix_source_file(spec: MixSpec) -> str:
    """The file a reject of a mix names: its noise, else its RIR, else its first talker."""
    if spec.noise_path:
        return spec.noise_path
    if spec.rir is not None:
        return spec.rir.path
    return spec.talkers[0].path if spec.talkers else ""


#: RIRs of this process (16 kHz float32, read-only), by (path, rir id): a few dozen files.
_RIRS: dict[tuple[str, str], np.ndarray] = {}


def rir_from_file(ref: RirRef) -> np.ndarray:
    """A mix's RIR read from its file; one that no longer has the samples it was listed with
    cannot be mixed (the next run lists it again)."""
    key = (ref.path, ref.rir_id)
    if key not in _RIRS:
        rir = load_rir(ref.path)
        if rir_digest(rir) != ref.rir_id:
            raise MixError(f"room impulse response {ref.rir_file} changed since it was listed")
        rir.setflags(write=False)
        _RIRS[key] = rir
    return _RIRS[key]


class MixSources:
    """Where a build's mixes take what they mix from: the noise stretch (``noise_for``), the
    RIR (``rir_for``; default its file) and the talkers of a babble (their utterances as the
    clean subset stores them: 16 kHz, on the 16-bit grid; or a ``--babble-root`` recording's;
    the last TALKER_CACHE kept, and at most TALKER_CACHE_BYTES of them: a MUSAN speech file
    runs for minutes)."""

    TALKER_CACHE = 64
    TALKER_CACHE_BYTES = 512 * 2**20

    def __init__(self, noise_for=None, rir_for=None, talker_for=None):
        self._noise_for = noise_for or read_noise
        self._rir_for = rir_for or rir_from_file
        # a --babble-root talker: from its file, checked against its content id (a recipe part:
        # from the store); None from talker_for: a talker of the corpus, read from its file
        self._talker_for = talker_for or (lambda ref: babble_from_file(ref)
                                          if ref.utt_id.startswith(BABBLE_KEY_PREFIX) else None)
        self._talkers: dict[str, np.ndarray] = {}

    def noise(self, spec: MixSpec, num_samples: int) -> tuple[np.ndarray, int]:
        return self._noise_for(spec, num_samples)

    def rir(self, ref: RirRef) -> np.ndarray:
        return self._rir_for(ref)

    def talker(self, ref: TalkerRef) -> np.ndarray:
        pcm = self._talkers.pop(ref.path, None)
        if pcm is None:
            pcm = self._talker_for(ref)
        if pcm is None:
            pcm, _ = fit_pcm16(load_audio(ref.path, SAMPLE_RATE))
        self._talkers[ref.path] = pcm  # most recently used last
        while len(self._talkers) > 1 and (len(self._talkers) > self.TALKER_CACHE or
                                          sum(a.nbytes for a in self._talkers.values()) > self.TALKER_CACHE_BYTES):
            self._talkers.pop(next(iter(self._talkers)))
        return pcm


def _write_sample(writer: ShardWriter, task: ShardTask, key: str, wav: np.ndarray, fields: dict) -> dict:
    """Add one sample to the shard; its table row (the fields and where they lie in the tar)."""
    return _add_member(writer, task, key, "flac", encode_flac(wav, SAMPLE_RATE), fields)


def _add_member(writer: ShardWriter, task, key: str, ext: str, payload: bytes, fields: dict) -> dict:
    """Add a sample's payload (``key.ext``) and JSON to the shard; its table row (the payload's
    place in the flac_* columns, whatever its format)."""
    where = writer.add(key, {ext: payload, "json": encode_json(fields)})
    return {**fields, "key": key, "shard": shard_relpath(task.name),
            "flac_offset": where[ext][0], "flac_size": where[ext][1],
            "json_offset": where["json"][0], "json_size": where["json"][1]}


def _publish(store: Path, task: ShardTask, owner: str | None, writer: ShardWriter, digest: str,
             rows: list[dict], rejects: list[dict]) -> None:
    """Only the build holding the lock publishes; rows first, tar last: a tar in place always
    has its rows next to it."""
    shard_bytes = writer.tmp_path.stat().st_size
    _check_owner(store, owner, task.name)
    write_json_atomic(st.rows_path(store, task.name), {
        "name": task.name, "subset": task.subset, "split": task.split, "fingerprint": task.fingerprint(),
        "samples": len(rows), "sha256": digest, "content_sha256": writer.content_sha256, "bytes": shard_bytes,
        "metrics": list(task.metrics),
        "rows": rows, "rejects": rejects,
    })
    _check_owner(store, owner, task.name)
    writer.publish()


@dataclass
class BuildSummary:
    samples_written: int = 0  # by this run
    shards_built: int = 0
    shards_reused: int = 0
    wall_s: float = 0.0
    worker_peak_rss_bytes: dict = field(default_factory=dict)
    noise_converted: int = 0  # noise files of a recipe stage that were resampled or re-quantised
    stage: dict = field(default_factory=dict)  # the stage's totals over all its shards (manifest)

    @property
    def throughput(self) -> float:
        return self.samples_written / self.wall_s if self.wall_s > 0 else 0.0

    def lines(self) -> list[str]:
        peak = max(self.worker_peak_rss_bytes.values(), default=0) / 2**20
        return [
            f"samples           {self.stage.get('samples', 0)} in the store for this stage, {self.samples_written} written now",
            f"shards            {self.shards_built} built, {self.shards_reused} already complete",
            f"rejects           {self.stage.get('rejects', 0)} (file and reason in rejects.csv)",
            f"PESQ failures     {self.stage.get('pesq_failures', 0)} (stored as NaN, the reason in 'errors')",
            f"wall time         {self.wall_s:.1f} s",
            f"throughput        {self.throughput:.1f} samples/s",
            f"peak worker RSS   {peak:.0f} MiB",
        ] + ([f"note              {self.noise_converted} noise files are not 16 kHz 16-bit PCM: the recipe mixes use "
              f"them resampled/quantised whole, as stored; a --mixes audio build reads them per stretch, so its "
              f"mixes of them differ in the last bits"] if self.noise_converted else [])


def _run_parallel(store: Path, tasks: list[ShardTask], jobs: int, backend: str, scheduler: str | None,
                  owner: str | None = None, noise_index: dict | None = None):
    """Yield each task's result as it completes."""
    from joblib import Parallel, delayed, parallel_config

    if not tasks:
        return
    metrics = metric_specs()  # a worker process knows only the built-in metrics unless told
    calls = (delayed(build_shard)(str(store), t, owner, metrics,
                                  noise_index if getattr(t, "layout", "") == RECIPE_LAYOUT else None) for t in tasks)
    if backend == "dask":
        try:
            from dask.distributed import Client
        except ImportError:
            raise InputError("--backend dask needs dask[distributed] (pip install 'metricaug[dask]')") from None
        client = Client(scheduler) if scheduler else Client(processes=True, n_workers=max(jobs, 1), threads_per_worker=1)
        try:
            with parallel_config(backend="dask"):
                yield from Parallel(n_jobs=-1, return_as="generator_unordered")(calls)
        finally:
            client.close()
    elif backend == "loky":
        _quiet_loky_resource_tracker()
        yield from Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")(calls)
    else:
        raise InputError(f"unknown --backend {backend!r} (expected loky or dask)")


# After a worker is killed, loky's resource tracker (a process of its own that shares our stderr)
# unlinks the semaphore the dead worker held and warns about it at exit: noise after the one-line
# error, and nothing is lost. The tracker takes its warning filters from the environment.
_RESOURCE_TRACKER_FILTER = "ignore::UserWarning:joblib.externals.loky.backend.resource_tracker"


def _quiet_loky_resource_tracker() -> None:
    present = os.environ.get("PYTHONWARNINGS", "")
    if _RESOURCE_TRACKER_FILTER not in present.split(","):
        os.environ["PYTHONWARNINGS"] = ",".join(f for f in (present, _RESOURCE_TRACKER_FILTER) if f)


def _worker_killed_message(store: Path, exc: BaseException, jobs: int) -> str:
    """One line for a worker the operating system killed (joblib's TerminatedWorkerError)."""
    names = st.shards_in_progress(store)
    shown = ", ".join(shard_relpath(n) for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    where = f" while building {shown}" if names else ""
    found = re.search(r"exit codes of the workers are \{([^}]*)\}", str(exc))
    codes = found.group(1) if found else "SIGKILL"  # joblib's message names them; SIGKILL is the usual one
    if "SIGKILL" in codes:
        what = (f"a build worker was killed by the operating system (SIGKILL){where}: most likely it ran out of "
                f"memory (the kernel's OOM killer); try fewer --jobs (this run used {jobs})")
    else:
        what = f"a build worker died ({codes}){where}; if memory ran short, try fewer --jobs (this run used {jobs})"
    return f"{what}. Complete shards are kept: run the same command again to resume"


def pending_tasks(store: Path, tasks: list[ShardTask], threads: int = 4) -> list[ShardTask]:
    """The tasks whose shard is not complete (see shards.store.shard_is_complete). Every
    complete-looking shard is read once for its sha256; threads overlap the reads."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        complete = list(pool.map(lambda t: st.shard_is_complete(store, t.name, t.fingerprint()), tasks))
    return [t for t, done in zip(tasks, complete) if not done]


def package_versions() -> dict[str, str]:
    import soundfile

    versions = {"python": sys.version.split()[0], "libsndfile": soundfile.__libsndfile_version__}
    for name in ("metricaug", "numpy", "scipy", "soundfile", "soxr", "pystoi", "pesq", "pyarrow", "joblib", "webdataset"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["cpu"] = cpu_kernels()
    return versions


def cpu_kernels() -> str:
    """What the CPU makes numpy and its BLAS use (``x86_64; numpy X86_V3; openblas Haswell``):
    a mix's last bits depend on it, so the manifest records it beside the versions."""
    import platform

    parts = [platform.machine() or "unknown machine"]
    try:
        parts.append("numpy " + ",".join(np.show_config(mode="dicts")["SIMD Extensions"]["found"]))
    except Exception:  # noqa: BLE001  (an older numpy without this report)
        pass
    try:
        from threadpoolctl import threadpool_info

        parts += [f"{i['internal_api']} {i.get('architecture', '?')}" for i in threadpool_info()
                  if i.get("user_api") == "blas"]
    except Exception:  # noqa: BLE001
        pass
    return "; ".join(dict.fromkeys(parts))  # numpy's and scipy's BLAS are often the same kind


def run_stage(store: Path, stage: str, tasks: list[ShardTask], stage_info: dict, prepare_rejects: list[dict],
              jobs: int = -1, backend: str = "loky", scheduler: str | None = None, progress: bool = True) -> BuildSummary:
    """Build the shards of one stage (resuming), then rewrite the table, rejects and manifest."""
    from tqdm import tqdm

    store = Path(store)
    if jobs in (0, -1):
        jobs = usable_cores()
    summary = BuildSummary()
    started = time.perf_counter()
    with st.store_lock(store) as owner:
        (store / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
        st.remove_stale_temporaries(store)
        st.write_plan(store, stage, {**stage_info, "shards": [t.name for t in tasks], "prepare_rejects": prepare_rejects})
        tasks = stamp_inputs(tasks)
        pending = pending_tasks(store, tasks, threads=min(jobs, 8))
        summary.shards_reused = len(tasks) - len(pending)
        # big shards first keeps both workers busy to the end
        pending.sort(key=lambda t: (-t.num_samples, t.name))
        # a clean shard's samples are utterances, not mixes: the bar counts samples
        bar = tqdm(total=sum(t.num_samples for t in pending), unit="sample", desc=f"{stage} {store.name}",
                   disable=not progress, smoothing=0.1, dynamic_ncols=True)
        # a recipe stage's noise shards first: its recipe parts mix from exactly the stored noise
        phases = [[t for t in pending if isinstance(t, SOURCE_TASKS)],
                  [t for t in pending if not isinstance(t, SOURCE_TASKS)]]
        try:
            for phase, batch in enumerate(phases):
                noise_index = noise_index_of(store, tasks, stage_info.get(NOISE_SOURCES, [])) if phase else None
                for result in _run_parallel(store, batch, jobs, backend, scheduler, owner, noise_index):
                    bar.update(result["planned"])
                    summary.shards_built += 1
                    summary.samples_written += result["samples"]
                    summary.noise_converted += result.get("converted", 0)
                    pid = result["pid"]
                    summary.worker_peak_rss_bytes[pid] = max(summary.worker_peak_rss_bytes.get(pid, 0),
                                                             result["peak_rss_bytes"])
        except KeyboardInterrupt:
            st.remove_stale_temporaries(store)  # the workers died mid-shard; keep only complete shards
            raise
        except TerminatedWorkerError as exc:  # SIGKILL (OOM killer), segfault
            message = _worker_killed_message(store, exc, jobs)
            st.remove_stale_temporaries(store)
            raise BuildError(message) from None
        finally:
            bar.close()
        summary.stage = st.finalize_store(store, package_versions())["stages"][stage]["totals"]
    summary.wall_s = time.perf_counter() - started
    return summary
