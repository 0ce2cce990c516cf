"""What the trainer reads from a store, and how an epoch's samples reach the model.

Everything comes through :mod:`shards.reader`: the clean train and validation utterances
from the table, the level members from the level index, the audio by key (a
:class:`shards.reader.ClipSource`). FLAC decoding happens in DataLoader worker processes;
batches are cut from runs of similar length so that little of a batch is padding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import pyarrow.compute as pc
import torch
from torch.utils.data import DataLoader, Dataset

from shards.distortions import DISTORTION_COLUMNS
from shards.errors import InputError
from shards.levelindex import LevelIndex, LevelMembers
from shards.reader import ClipSource, Store
from shards.vocab import CLEAN_SUBSET, EMOTIONS, TRAIN, VALIDATION

LABEL_INDEX = {name: i for i, name in enumerate(EMOTIONS)}
#: The table column naming a mix's distortion kind (the first of the kinds' columns); a store
#: of additive mixes only has none, and there a mix's kind is its noise type (noise, music).
KIND_COLUMN, _ = DISTORTION_COLUMNS[0]
NOISE_TYPE_COLUMN = "noise_type"


@dataclass
class SampleSet:
    """Samples of one store with their labels and lengths: a clip source per part
    (clean utterances, each level's draw), flattened into one index."""

    sources: list[ClipSource]
    source_of: np.ndarray  # (n,) which source
    index_in_source: np.ndarray  # (n,) position inside that source
    labels: np.ndarray  # (n,) int64 class index
    lengths: np.ndarray  # (n,) samples at 16 kHz

    def __len__(self) -> int:
        return int(self.labels.size)

    def key(self, i: int) -> str:
        """The store key of sample ``i``."""
        return self.sources[int(self.source_of[i])].keys[int(self.index_in_source[i])]

    def take(self, indices: np.ndarray) -> "SampleSet":
        """The samples at ``indices``, in that order."""
        return SampleSet(self.sources, self.source_of[indices], self.index_in_source[indices],
                         self.labels[indices], self.lengths[indices])

    @staticmethod
    def concat(parts: Sequence["SampleSet"]) -> "SampleSet":
        sources, source_of = [], []
        for part in parts:
            source_of.append(part.source_of + len(sources))
            sources += part.sources
        return SampleSet(
            sources=sources,
            source_of=np.concatenate(source_of) if parts else np.empty(0, np.int64),
            index_in_source=np.concatenate([p.index_in_source for p in parts]) if parts else np.empty(0, np.int64),
            labels=np.concatenate([p.labels for p in parts]) if parts else np.empty(0, np.int64),
            lengths=np.concatenate([p.lengths for p in parts]) if parts else np.empty(0, np.int64),
        )


def labels_of(names: Sequence[str], where: str) -> np.ndarray:
    """Class indices (EMOTIONS order) of label names; an unknown name is an InputError."""
    try:
        return np.array([LABEL_INDEX[n] for n in names], dtype=np.int64)
    except KeyError as exc:
        raise InputError(f"{where}: label {exc.args[0]!r} is not one of {', '.join(EMOTIONS)}") from None


def table_samples(store: Store, table, what: str) -> SampleSet:
    """The samples of some table rows (columns key, label, num_samples), in row order."""
    keys = table["key"].to_pylist()
    return SampleSet(
        sources=[store.clips(keys)],
        source_of=np.zeros(len(keys), np.int64),
        index_in_source=np.arange(len(keys), dtype=np.int64),
        labels=labels_of(table["label"].to_pylist(), f"{store.path} {what}"),
        lengths=table["num_samples"].to_numpy().astype(np.int64),
    )


class StoreData:
    """The parts of a store one training run reads."""

    def __init__(self, store: Store, index: LevelIndex | None):
        self.store = store
        self.index = index  # None: no level index (a run that does not draw by level)
        clean = store.table(["key", "utt_id", "label", "split", "num_samples"], filters=[("subset", "=", CLEAN_SUBSET)])
        clean = clean.sort_by([("key", "ascending")])
        self._length_of_utt = dict(zip(clean["utt_id"].to_pylist(), clean["num_samples"].to_pylist()))
        self._clean = {split: clean.filter(pc.equal(clean["split"], split)) for split in (TRAIN, VALIDATION)}
        for split, table in self._clean.items():
            if table.num_rows == 0:
                raise InputError(f"{store.path}: no clean {split} utterances in the store (expected a superset build)")
        self.n_levels = index.n_levels if index else 0
        self.train_level_sizes = index.counts(TRAIN) if index else []
        self._level_members: dict[tuple[str, int], LevelMembers] = {}

    @property
    def n_train(self) -> int:
        return self._clean[TRAIN].num_rows

    def clean(self, split: str) -> SampleSet:
        return table_samples(self.store, self._clean[split], f"clean {split}")

    def clean_utt_ids(self, split: str) -> list[str]:
        """Utterance ids of the clean utterances of ``split``, in the order of :meth:`clean`."""
        return self._clean[split]["utt_id"].to_pylist()

    def level_utt_ids(self, group: str, level: int, indices: np.ndarray | None = None) -> list[str]:
        """The source utterance of each member of one level (of ``indices`` into them), in the
        order of :meth:`level_samples`."""
        members = self.members(group, level)
        return list(members.take(indices).utt_id if indices is not None else members.utt_id)

    def subset(self, subset: str, split: str) -> SampleSet:
        """Every sample of one subset and split (e.g. the fixed-SNR train mixes), in key order.
        Lengths are the rows' own: a subset may hold samples that are no clean utterance
        (CopyPaste's composites and their mixes)."""
        table = self.store.table(["key", "label", "num_samples"], filters=[("subset", "=", subset), ("split", "=", split)])
        return table_samples(self.store, table.sort_by([("key", "ascending")]), f"{subset} {split}")

    def subset_kinds(self, subset: str, split: str) -> np.ndarray:
        """The distortion kind of every sample of :meth:`subset` (same order): the table's kind
        column, or in a store without it (additive mixes only) each mix's noise type."""
        column = KIND_COLUMN if KIND_COLUMN in self.store.table_columns() else NOISE_TYPE_COLUMN
        table = self.store.table(["key", column], filters=[("subset", "=", subset), ("split", "=", split)])
        return np.array(table.sort_by([("key", "ascending")])[column].to_pylist(), dtype=object)

    def members(self, group: str, level: int) -> LevelMembers:
        key = (group, level)
        if key not in self._level_members:
            self._level_members[key] = self.index.members(group, level)
        return self._level_members[key]

    def level_samples(self, group: str, level: int, indices: np.ndarray | None = None) -> SampleSet:
        """Members of one level (``indices`` into them: a draw, repeats allowed)."""
        members = self.members(group, level)
        if indices is not None:
            members = members.take(indices)
        n = len(members)
        return SampleSet(
            sources=[self.store.clips(members)],
            source_of=np.zeros(n, np.int64),
            index_in_source=np.arange(n, dtype=np.int64),
            labels=labels_of(members.label, f"{self.index.members_path}"),
            # a mix is as long as its clean utterance
            lengths=np.array([self._length_of_utt[u] for u in members.utt_id], dtype=np.int64),
        )


class WaveformDataset(Dataset):
    """Item i of a :class:`SampleSet`: (waveform float32 tensor, label, i). Decoding runs in
    whichever process asks, so DataLoader workers share the FLAC decoding. Items marked in
    ``skip`` (their features are cached) are not read: an empty waveform stands for them."""

    def __init__(self, samples: SampleSet, skip: np.ndarray | None = None):
        self.samples = samples
        self.skip = skip

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples
        if self.skip is not None and self.skip[i]:
            return torch.empty(0, dtype=torch.float32), int(s.labels[i]), int(i)
        wav = s.sources[int(s.source_of[i])].audio(int(s.index_in_source[i]))
        return torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)), int(s.labels[i]), int(i)


def collate_waveforms(items):
    """Pad a batch of waveforms: (B, max_len) float32, lengths (B,), labels (B,), indices (B,).
    In a DataLoader worker the batch is written straight into shared memory, so it reaches
    the training process without another copy of several megabytes."""
    wavs, labels, indices = zip(*items)
    lengths = torch.tensor([w.numel() for w in wavs], dtype=torch.long)
    shape = (len(wavs), int(lengths.max()) if wavs else 0)
    if torch.utils.data.get_worker_info() is not None:
        storage = torch.UntypedStorage._new_shared(shape[0] * shape[1] * 4)
        batch = torch.tensor([], dtype=torch.float32).set_(storage).view(shape)
    else:
        batch = torch.empty(shape, dtype=torch.float32)
    for row, wav in enumerate(wavs):
        batch[row, : wav.numel()] = wav
        batch[row, wav.numel():] = 0.0
    return batch, lengths, torch.tensor(labels, dtype=torch.long), torch.tensor(indices, dtype=torch.long)


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None,
                   pool_batches: int = 50) -> list[np.ndarray]:
    """Batches of indices with similar lengths. With ``rng``: shuffle, sort each pool of
    ``pool_batches`` batches by length, cut it into batches and shuffle the batch order
    (random yet little padding). Without: sorted by length (evaluation)."""
    n = int(lengths.size)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    order = rng.permutation(n)
    pool = batch_size * pool_batches
    batches = []
    for start in range(0, n, pool):
        chunk = order[start:start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, chunk.size, batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def make_loader(samples: SampleSet, batches: list[np.ndarray], workers: int,
                skip: np.ndarray | None = None) -> DataLoader:
    """A DataLoader whose workers decode the FLAC of ``samples`` batch by batch (not those
    marked in ``skip``)."""
    workers = max(0, workers)
    return DataLoader(WaveformDataset(samples, skip), batch_sampler=batches, collate_fn=collate_waveforms,
                      num_workers=workers, persistent_workers=False,
                      multiprocessing_context="fork" if workers else None)


Featurize = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class FeatureCache:
    """The model's input features of samples that are the same every epoch (clean train
    utterances, the validation sets), computed once per run and kept in memory, by store
    key: a (frames, dims) float32 tensor each, exactly the rows the front end gives the
    sample inside any batch (the log-mel front end is per item). A batch is assembled from
    them with ``pad`` in the padded frames, as the front end plus normalisation gives."""

    def __init__(self, cap_bytes: int, pad: torch.Tensor):
        self.cap_bytes = int(cap_bytes)
        self.pad = pad  # (dims,): the normalised value of a zero (padded) frame
        self._feats: dict[str, torch.Tensor] = {}
        self.nbytes = 0
        # features read from the disk cache (trainer.diskcache): memory-mapped front-end output,
        # normalised as a batch is assembled; the page cache holds them, not --cache-mb
        self._stored: dict[str, np.ndarray] = {}
        self._norm: tuple[torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self._feats) + len(self._stored)

    def _has(self, key: str) -> bool:
        return key in self._feats or key in self._stored

    def get(self, key: str) -> torch.Tensor | None:
        if key in self._stored:
            mean, std = self._norm
            return (torch.from_numpy(np.array(self._stored[key])) - mean) / std
        return self._feats.get(key)

    def hits(self, samples: SampleSet) -> np.ndarray:
        """(n,) bool: which samples' features are cached."""
        return np.array([self._has(samples.key(i)) for i in range(len(samples))], dtype=bool)

    def add_stored(self, samples: SampleSet, stored: Sequence[np.ndarray], mean: torch.Tensor, std: torch.Tensor) -> None:
        """Keep the front end's features of ``samples`` from the disk cache (``stored[i]``:
        sample i's (frames, dims), memory-mapped), normalised by ``mean`` and ``std`` on use."""
        self._norm = (mean.cpu(), std.cpu())
        for i, feats in enumerate(stored):
            self._stored[samples.key(i)] = feats

    def add(self, samples: SampleSet, frames: np.ndarray, featurize: Featurize, workers: int,
            batch_size: int = 64) -> bool:
        """Featurize and keep every sample of ``samples`` not cached yet (``frames``: each
        one's frame count, for the size), if they all fit under the cap; False if not."""
        todo = np.array([i for i in range(len(samples)) if not self._has(samples.key(i))], dtype=np.int64)
        dim = int(self.pad.numel())
        need = int(np.sum(frames[todo], dtype=np.int64)) * dim * 4 if todo.size else 0
        if self.nbytes + need > self.cap_bytes:
            return False
        part = samples.take(todo)
        for wavs, lengths, _, indices in make_loader(part, length_batches(part.lengths, batch_size, None), workers):
            feats, n_frames = featurize(wavs, lengths)
            feats = feats.cpu()
            for row, (i, n) in enumerate(zip(indices.tolist(), n_frames.tolist())):
                item = feats[row, :n].clone()
                self._feats[part.key(i)] = item
                self.nbytes += item.numel() * item.element_size()
        return True

    def assemble(self, keys: Sequence[str | None], computed: dict[int, tuple[torch.Tensor, int]] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """A padded batch (B, T, dims) and frame counts (B,) of cached items (``keys``) and
        computed ones (``computed[row] = (features, frames)`` where ``keys[row]`` is None)."""
        rows = []
        for row, key in enumerate(keys):
            rows.append(self.get(key) if key is not None else computed[row][0][: computed[row][1]])
        frames = torch.tensor([r.shape[0] for r in rows], dtype=torch.long)
        batch = self.pad.expand(len(rows), int(frames.max()), -1).clone()
        for row, feats in enumerate(rows):
            batch[row, : feats.shape[0]] = feats
        return batch, frames


def feature_batches(samples: SampleSet, batches: list[np.ndarray], featurize: Featurize, workers: int,
                    cache: FeatureCache | None = None, device: torch.device | str = "cpu"
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(features, frame lengths, labels, indices) of each batch, the features normalised as
    ``featurize`` gives them. Cached samples come from ``cache``; the others are decoded (in
    ``workers`` DataLoader processes) and featurized here. Nothing cached: the plain path."""
    hits = cache.hits(samples) if cache is not None and len(cache) else None
    if hits is None or not hits.any():
        for wavs, lengths, labels, indices in make_loader(samples, batches, workers):
            feats, frames = featurize(wavs, lengths)
            yield feats, frames, labels, indices
        return
    if hits.all():  # nothing to decode: no worker processes
        # a DataLoader draws its base seed from torch's generator as it starts iterating;
        # draw it here too, so that the dropout masks that follow are the same as before
        torch.empty((), dtype=torch.int64).random_()
        for batch in batches:
            batch = np.asarray(batch, dtype=np.int64)
            feats, frames = cache.assemble([samples.key(i) for i in batch])
            yield (feats.to(device), frames.to(device), torch.from_numpy(samples.labels[batch]),
                   torch.from_numpy(batch))
        return
    for wavs, lengths, labels, indices in make_loader(samples, batches, workers, skip=hits):
        idx = indices.numpy()
        keys = [samples.key(i) if hits[i] else None for i in idx]
        rows = [row for row, key in enumerate(keys) if key is None]
        computed = {}
        if rows:
            sub = torch.tensor(rows, dtype=torch.long)
            sub_lengths = lengths[sub]
            feats, frames = featurize(wavs[sub, : int(sub_lengths.max())], sub_lengths)
            feats, frames = feats.cpu(), frames.cpu()
            computed = {row: (feats[j], int(frames[j])) for j, row in enumerate(rows)}
        feats, frames = cache.assemble(keys, computed)
        yield feats.to(device), frames.to(device), labels, indices
