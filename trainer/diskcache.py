"""Features of the fixed inputs on disk (``trainer run --feature-cache DIR``).

For an expensive front end (``disk_cacheable``: eGeMAPS, a Hugging Face encoder, vq-wav2vec)
the features of the inputs that are the same every epoch and every run on a store (clean
train and validation utterances, each level's validation mixes, a baseline's fixed mixes)
are computed once and written under ``DIR``; later runs with the same front end on the same
store read them instead of running the front end again. They are the front end's own output
(before the run's normalisation), float32, exactly what it computes: a run that reads them
trains as one that computed them.

An entry is one sample set: ``DIR/<front end>-<identity digest>/<set digest>/`` with
``features.npy`` (every sample's frames, one after another, in the set's order) and
``meta.json``. The set digest covers the front end's identity (its settings and weights'
checksums), the samples' keys and the sha256 of every store shard holding them (the store's
manifest): a rebuilt store or another encoder never finds an old entry. On read the entry's
``meta.json`` must name the same identities, and the sha256 of ``features.npy`` must be the
one recorded when it was written; otherwise the entry is refused with one line saying what to
delete. An entry is written to a temporary folder and renamed into place, so a run killed while
writing leaves none, and two runs writing the same entry both succeed (the first kept).

Cost: ``frames_per_second * dim * 4`` bytes per second of audio (README "Front ends").
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from shards.atomic import sha256_file, write_json_atomic
from shards.errors import InputError
from shards.reader import Store
from trainer.data import SampleSet, length_batches, make_loader
from trainer.features import FrontEnd

FORMAT = "metricaug-features/1"
FEATURES = "features.npy"
META = "meta.json"
BATCH = 16


def _digest(document) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


class DiskFeatureCache:
    def __init__(self, root: str | Path, front_end: FrontEnd, store: Store, log: Callable[[str], None] = print):
        self.root = Path(root)
        self.front_end = front_end
        self.identity = front_end.identity()
        self.folder = self.root / f"{front_end.name}-{_digest(self.identity)[:16]}"
        self.store = store
        self._shard_sha = {s["path"]: s["sha256"] for s in store.manifest.get("shards", [])}
        self.log = log

    def set_identity(self, samples: SampleSet) -> dict:
        """The samples by content: their keys and the sha256 of the shards holding them."""
        keys = [samples.key(i) for i in range(len(samples))]
        shards = sorted({name for source in samples.sources for name in source.shard_names()})
        missing = [s for s in shards if s not in self._shard_sha]
        if missing:
            raise InputError(f"{self.store.path}: shard {missing[0]} is not in the manifest; run 'prep verify {self.store.path}'")
        return {"n": len(keys), "keys_sha256": _digest(keys),
                "shards_sha256": _digest({s: self._shard_sha[s] for s in shards})}

    def features(self, what: str, samples: SampleSet, workers: int = 0) -> list[np.ndarray]:
        """Each sample's (frames, dim) float32 features, from the entry for ``samples`` (read
        and checked, or computed and written first)."""
        data = self.set_identity(samples)
        entry = self.folder / _digest({"front_end": self.identity, "data": data})[:32]
        if not (entry / META).is_file():
            self._write(entry, what, samples, data, workers)
        else:
            self.log(f"feature cache on disk: {what} read from {entry}")
        return self._read(entry, samples, data)

    def _read(self, entry: Path, samples: SampleSet, data: dict) -> list[np.ndarray]:
        delete = f"delete {entry} and run again to recompute it"
        try:
            meta = json.loads((entry / META).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{entry / META}: unreadable feature cache entry ({exc}); {delete}") from None
        if meta.get("format") != FORMAT or meta.get("front_end") != self.identity or meta.get("data") != data:
            what = ("another front end" if meta.get("front_end") != self.identity else
                    "other store data" if meta.get("data") != data else "another format")
            raise InputError(f"{entry}: feature cache entry written for {what}; {delete}")
        path = entry / FEATURES
        if not path.is_file() or sha256_file(path) != meta["sha256"]:
            raise InputError(f"{path}: feature cache data changed since it was written (sha256 differs); {delete}")
        feats = np.load(path, mmap_mode="r")
        offsets = np.asarray(meta["offsets"], dtype=np.int64)
        frames = self.front_end.frames_for(torch.from_numpy(samples.lengths)).numpy()
        if feats.shape != (int(offsets[-1]), self.front_end.dim) or not np.array_equal(np.diff(offsets), frames):
            raise InputError(f"{path}: shape {feats.shape} does not fit the samples' frames; {delete}")
        return [feats[offsets[i]:offsets[i + 1]] for i in range(len(samples))]

    def _write(self, entry: Path, what: str, samples: SampleSet, data: dict, workers: int) -> None:
        started = time.perf_counter()
        frames = self.front_end.frames_for(torch.from_numpy(samples.lengths)).numpy().astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(frames)])
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.folder))
        try:
            out = np.lib.format.open_memmap(tmp / FEATURES, mode="w+", dtype=np.float32,
                                            shape=(int(offsets[-1]), self.front_end.dim))
            for wavs, lengths, _, indices in make_loader(samples, length_batches(samples.lengths, BATCH, None), workers):
                feats, n_frames = self.front_end(wavs, lengths)
                feats = feats.cpu().numpy()
                for row, (i, n) in enumerate(zip(indices.tolist(), n_frames.tolist())):
                    out[offsets[i]:offsets[i] + n] = feats[row, :n]
            out.flush()
            del out
            meta = {"format": FORMAT, "what": what, "front_end": self.identity, "data": data,
                    "store": str(self.store.path), "offsets": offsets.tolist(), "dim": self.front_end.dim,
                    "sha256": sha256_file(tmp / FEATURES)}
            write_json_atomic(tmp / META, meta)
            try:
                os.rename(tmp, entry)
            except OSError:  # another run wrote it meanwhile: keep theirs
                if not (entry / META).is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        size = (entry / FEATURES).stat().st_size
        self.log(f"feature cache on disk: {what} computed ({len(samples)} samples, {size / 2**20:.1f} MiB) in "
                 f"{time.perf_counter() - started:.1f} s: {entry}")
