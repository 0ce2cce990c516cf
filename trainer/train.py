"""The MetricAug training loop (one readable loop, a config dataclass, no framework).

Epoch i trains on the N clean train utterances plus N mixes drawn from the train levels,
round(N * w_k) from level k (largest remainder, so exactly N). After the epoch the model is
evaluated on the clean validation set and on each level's validation mixes; the gaps
g_k = WF1_clean - WF1_k (or UAR, ``--gap-score``) give the next weights by Algorithm 1
(``trainer.weights``). The epoch kept (``best.pt``) and early stopping follow the selection
rule (``--select``): WF1 over the clean validation set and every level's mixes pooled, as the
authors (without a level index: every validation mix of the superset), or the clean set alone.
``--stratify-class`` draws each level's mixes class by class, keeping the clean class prior;
``--draw-kinds`` keeps the superset draw to some distortion kinds (validation unchanged).
``--max-steps`` ends training after exactly S optimizer steps, validating the partial last
epoch. Once the split-half r of the gaps shows the feedback is noise, the log warns once
(``trainer.protocol``). What each strategy trains on lives in ``trainer.strategies``; the run
folder's files in ``trainer.runfolder``.

Everything an epoch does is a function of (seed, epoch, the state at its start): the draw,
the batch order and dropout are seeded by (seed, epoch). The state is checkpointed after
every epoch (``last.pt``, with the epoch records), so ``--resume`` after a kill anywhere
restarts the unfinished epoch from that state and reaches the same result as a run that
was never interrupted. Under ``torchrun`` each rank trains on a disjoint share of the
epoch's batches (DDP); rank 0 writes the run folder.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from shards.atomic import atomic_output, sha256_file, write_bytes_atomic, write_json_atomic
from shards.errors import InputError
from shards.reader import open_store
from shards.store import folder_lock
from shards.vocab import CLEAN_SUBSET, EMOTIONS, SUPERSET_SUBSET, TRAIN, VALIDATION
from trainer.data import FeatureCache, SampleSet, StoreData, feature_batches, length_batches, make_loader
from trainer.model import count_parameters
from trainer.predict import classification_scores, predict, predict_with_loss
from trainer.runfolder import (BEST, CONFIG, EPOCHS, LAST, LOCK, RUN_FORMAT, data_identity, load_checkpoint,
                               read_config, same_data)
from trainer.frontends import DEFAULT_FRONT_END, FRONT_ENDS
from trainer.runmodel import front_end_for, new_model
from trainer.threads import DEFAULT_CACHE_MB, thread_plan
from trainer.protocol import (DROPOUT_SEED_STRIDE, FEEDBACK_BURN_IN, FEEDBACK_RELIABILITY_MIN, GAP_SCORES,
                              SELECTION_RULES, STREAM_BATCH_ORDER, STREAM_NORMALISATION, STREAM_SPLIT_HALF,
                              STREAM_VALIDATION_POOL, STREAM_VALIDATION_SUBSET, check_gap_score, check_smoothing,
                              feedback_reliability, gaps as score_gaps, loss_gaps, pearson, smooth, smooth_halves,
                              split_halves, warn_unreliable_now, weights_l1)
from trainer.strategies import DRAW_KINDS_OPTION, STRATEGIES, StrategyContext, get_strategy, parse_draw_kinds
from trainer.weights import LEVEL_FLOOR

#: Clean train utterances used to estimate the feature normalisation (mean, std per dim).
NORM_UTTERANCES = 512
#: Settings a resumed run must share with the run it continues (config.json keys).
RESUME_KEYS = ("data", "strategy", "metric", "quant", "hidden", "features", "batch_size", "lr", "seed", "floor",
               "select", "gap_score", "gap_smoothing", "stratify_class", "draw_kinds")
#: What config.json files written before a setting existed imply for it.
IMPLIED_BEFORE = {"select": "clean", "gap_score": "wf1", "gap_smoothing": 0.0, "stratify_class": False,
                  "draw_kinds": ""}
#: What the run read, by content: a resume must read the same.
IDENTITY_KEYS = {"data_identity": "the store's train/validation data", "level_index_sha256": "the level index",
                 "checkpoint_sha256": "the vq-wav2vec checkpoint",
                 "front_end": "the front end (its settings, or its model's weights)"}


@dataclass
class TrainConfig:
    data: str  # the store folder
    out: str  # the run folder
    strategy: str = "metricaug"
    metric: str = "stoi"
    quant: str = "gmm"
    levels: int | None = None  # K of the level index; None: the one there is
    hidden: int = 16
    features: str = DEFAULT_FRONT_END
    checkpoint: str | None = None  # vq-wav2vec checkpoint for features="vqwav2vec"
    encoder: str | None = None  # Hugging Face encoder folder for features="hf"
    layer: int | None = None  # features="hf": the one hidden state read; None: a learned weighting of all
    feature_cache: str | None = None  # folder of the on-disk feature cache of the fixed inputs; None: none
    batch_size: int = 32
    lr: float = 1e-3
    max_epochs: int = 100
    patience: int = 10
    floor: float = LEVEL_FLOOR
    val_per_level: int = 0  # 0: every validation mix of each level
    select: str = "pooled"  # the validation set that picks best.pt and stops early (SELECTION_RULES)
    gap_score: str = "wf1"  # the score of the gaps g_k that Algorithm 1 reads (GAP_SCORES)
    gap_smoothing: float = 0.0  # B: Algorithm 1 reads h_e = B h_(e-1) + (1 - B) g_e; 0: the paper's raw gaps
    stratify_class: bool = False  # level strategies: draw within (level, class) cells, keeping the clean class prior
    draw_kinds: str = ""  # superset draw: only mixes of these kinds (trainer.strategies.parse_draw_kinds); "": all
    max_steps: int = 0  # 0: no limit; else training ends after exactly this many optimizer steps
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    threads: int = 0  # torch threads; 0: OMP_NUM_THREADS if set, else the cores the workers leave
    cache_mb: int = DEFAULT_CACHE_MB  # features of the fixed inputs kept in memory; 0: none
    test_every_epoch: bool = False  # diagnostic: score every test condition after each epoch (never selects)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if name != "cpu" and not name.startswith("cuda"):
        raise InputError(f"--device {name!r}: expected auto, cpu or cuda[:N]")
    return torch.device(name)


def _rng(seed: int, *parts: int) -> np.random.Generator:
    """The run's random stream ``parts`` (trainer.strategies names the streams)."""
    return np.random.default_rng([seed, *parts])


@dataclass
class RunState:
    """What a checkpoint holds besides the weights: enough to continue exactly."""

    epoch: int = 0  # epochs completed
    weights: list[float] = field(default_factory=list)  # the next epoch's level weights
    best_wf1: float = -1.0  # best validation WF1 by the run's selection rule
    best_epoch: int = 0
    since_best: int = 0
    steps: int = 0  # optimizer steps so far
    records: list[dict] = field(default_factory=list)  # one per completed epoch
    feedback: list[float] = field(default_factory=list)  # h_e: the smoothed gaps Algorithm 1 last read
    feedback_halves: list[list[float]] = field(default_factory=list)  # h_e of each half of the validation set


class Distributed:
    """Rank and world size under torchrun (RANK/WORLD_SIZE set), else a single process."""

    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.active = self.world > 1
        if self.active and not torch.distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend=backend)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


class Trainer:
    def __init__(self, config: TrainConfig, log: Callable[[str], None] = print, progress: bool = True):
        self.config = config
        self.log = log
        self.progress = progress
        self.device = resolve_device(config.device)
        if config.device == "auto" and self.device.type == "cuda" and "LOCAL_RANK" in os.environ:
            self.device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        # DataLoader workers decode on their own cores: the main process keeps the rest
        # (oversubscribed cores slow a small model's step by orders of magnitude)
        if config.threads < 0 or config.cache_mb < 0:
            raise InputError(f"--threads {config.threads} / --cache-mb {config.cache_mb}: expected 0 or more")
        self.threads = thread_plan(config.threads, config.workers)
        if self.device.type == "cpu":
            torch.set_num_threads(self.threads)
        self.cache: FeatureCache | None = None
        if not 8 <= config.hidden <= 128 or config.hidden % 2:
            raise InputError(f"--hidden {config.hidden}: expected an even number from 8 to 128")
        if config.select not in SELECTION_RULES:
            raise InputError(f"--select {config.select!r}: expected one of {', '.join(SELECTION_RULES)}")
        check_gap_score(config.gap_score)
        check_smoothing(config.gap_smoothing)
        if config.max_steps < 0:
            raise InputError(f"--max-steps {config.max_steps}: expected 0 (no limit) or a positive number of steps")
        self.strategy = get_strategy(config.strategy)
        if config.stratify_class and not self.strategy.draws_levels:
            level_strategies = ", ".join(name for name, s in STRATEGIES.items() if s.draws_levels)
            raise InputError(f"--stratify-class: --strategy {config.strategy} draws no levels; the option is for "
                             f"{level_strategies}")
        # recorded in its normal form; a copy, so the caller's config is left as given
        self.config = config = dataclasses.replace(config, draw_kinds=parse_draw_kinds(config.draw_kinds))
        if config.draw_kinds and not self.strategy.draws_kinds:
            kind_strategies = ", ".join(name for name, s in STRATEGIES.items() if s.draws_kinds)
            raise InputError(f"{DRAW_KINDS_OPTION}: --strategy {config.strategy} draws no superset mixes at random; "
                             f"the option is for {kind_strategies}")
        store = open_store(config.data)
        try:
            index = store.level_index(config.metric, config.quant, config.levels)
        except InputError:
            if self.strategy.draws_levels:
                raise
            index = None  # the baselines draw nothing by level; with an index they validate on the levels too
        self.data = StoreData(store, index)
        self.K = index.n_levels if index else 0
        self.front_end = front_end_for(asdict(config), self.device)
        self.disk_cache = None
        self._stored: dict = {}  # fixed input sets read from the disk cache
        if config.feature_cache and FRONT_ENDS[config.features].disk_cacheable:
            from trainer.diskcache import DiskFeatureCache

            self.disk_cache = DiskFeatureCache(config.feature_cache, self.front_end, store, log)
        elif config.feature_cache:
            log(f"--feature-cache: {config.features} features are cheaper to compute than to read; not cached on disk")
        self.train_clean = self.data.clean(TRAIN)
        self.val_clean = self.data.clean(VALIDATION)
        val_utt_ids = self.data.clean_utt_ids(VALIDATION)
        position = {u: i for i, u in enumerate(val_utt_ids)}
        self.val_levels, self.val_sources = [], []  # each level's validation mixes; each mix's clean utterance
        for level in range(1, self.K + 1):
            samples, sources = self._validation_level(level, position)
            self.val_levels.append(samples)
            self.val_sources.append(sources)
        #: the two disjoint halves of the validation utterances (a mix goes with its utterance):
        #: the feedback's split-half reliability
        self.val_half = split_halves(val_utt_ids, self.rng(STREAM_SPLIT_HALF))
        self.N = len(self.train_clean)
        #: no level index: the validation mixes the pooled rule pools with the clean utterances
        self.val_pool, self.pool_note = (self._validation_pool() if not self.K and config.select == "pooled"
                                         else (SampleSet.concat([]), ""))
        #: the rule that picks best.pt: pooled needs validation mixes (the levels', or the superset's)
        self.selected_on = config.select if (config.select == "clean" or self.K or len(self.val_pool)) else "clean"
        #: --test-every-epoch: the test conditions scored after each epoch, for the record only
        self.test_sets: dict[str, SampleSet] = {}
        if config.test_every_epoch:
            from trainer.evaluate import NoTestSets, test_conditions

            try:
                self.test_sets = test_conditions(store)
            except NoTestSets as exc:
                raise InputError(f"--test-every-epoch: {exc}") from None
        self.context = StrategyContext(
            data=self.data, train_clean=self.train_clean, N=self.N, K=self.K, floor=config.floor, rng=self.rng,
            score_command=f"prep score {config.data} --metric {config.metric} --quant {config.quant}",
            stratify_class=config.stratify_class, draw_kinds=config.draw_kinds)
        self.strategy.prepare(self.context)

    def rng(self, stream: int, *parts: int) -> np.random.Generator:
        return _rng(self.config.seed, stream, *parts)

    # -- data --------------------------------------------------------------------------
    def _validation_level(self, level: int, position: dict[str, int]) -> tuple[SampleSet, np.ndarray]:
        """One level's validation mixes and, for each, the index of its clean utterance in the
        clean validation set (``position``: utterance id to that index)."""
        size = len(self.data.members(VALIDATION, level))
        m = self.config.val_per_level
        pick = None
        if m and size > m:  # a fixed, seeded subset: the same mixes every epoch
            pick = np.sort(self.rng(STREAM_VALIDATION_SUBSET, level).choice(size, m, replace=False))
        sources = np.array([position[u] for u in self.data.level_utt_ids(VALIDATION, level, pick)], dtype=np.int64)
        return self.data.level_samples(VALIDATION, level, pick), sources

    def _validation_pool(self) -> tuple[SampleSet, str]:
        """Without a level index, what the pooled rule pools with the clean validation utterances,
        and its name for the log: every validation mix of the superset, as the level path pools
        every level's (all but the mixes no level holds). With --val-per-level M and --levels K,
        a fixed, seeded subset of K x M of them: the most the level path would pool with K levels."""
        mixes = self.data.subset(SUPERSET_SUBSET, VALIDATION)
        size, m, k = len(mixes), self.config.val_per_level, self.config.levels
        if m and k and size > m * k:
            pick = np.sort(self.rng(STREAM_VALIDATION_POOL).choice(size, m * k, replace=False))
            return mixes.take(pick), (f"a fixed, seeded {m * k} of the {size} validation mixes of the superset "
                                      f"(--val-per-level {m} x --levels {k})")
        note = f"every validation mix of the superset ({size})"
        if m and not k:
            note += f"; --val-per-level caps each level and there are no levels: add --levels K to pool K x {m}"
        return mixes, note

    def loader(self, samples: SampleSet, batches: list[np.ndarray]):
        return make_loader(samples, batches, self.config.workers)

    def data_read(self) -> dict:
        """What the run reads, by content (config.json; a resume and ``trainer eval`` compare)."""
        validated_on = [SUPERSET_SUBSET] if self.data.index or len(self.val_pool) else []  # the validation mixes
        subsets = [CLEAN_SUBSET, *self.strategy.subsets] + validated_on
        identity = {"data_identity": data_identity(self.data.store, subsets)}
        if self.data.index:
            identity["level_index_sha256"] = sha256_file(self.data.index.path)
        if self.config.checkpoint:
            identity["checkpoint_sha256"] = sha256_file(self.config.checkpoint)
        identity["front_end"] = self.front_end.identity()
        return identity

    # -- model -------------------------------------------------------------------------
    def features(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, frames = self.front_end(wavs.to(self.device), lengths.to(self.device))
        return (feats - self.norm_mean) / self.norm_std, frames

    def estimate_normalisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std per feature dimension over valid frames of (up to NORM_UTTERANCES)
        clean train utterances: fixed for the run and stored in its checkpoints."""
        n = min(self.N, NORM_UTTERANCES)
        pick = np.sort(self.rng(STREAM_NORMALISATION).choice(self.N, n, replace=False))
        subset = self.train_clean.take(pick)
        total = torch.zeros(self.front_end.dim, dtype=torch.float64)
        total_sq = torch.zeros_like(total)
        count = 0
        batches = length_batches(subset.lengths, 64, None)
        for valid in self._valid_frames(subset, batches, pick):
            total += valid.sum(0)
            total_sq += (valid ** 2).sum(0)
            count += valid.shape[0]
        mean = total / count
        std = (total_sq / count - mean ** 2).clamp_min(1e-10).sqrt()
        return mean.float(), std.float()

    def _valid_frames(self, subset: SampleSet, batches: list[np.ndarray], pick: np.ndarray):
        """Each batch's valid frames of the front end's features (float64, CPU), item after
        item; from the disk cache when there is one (the same numbers, in the same order)."""
        stored = self.stored_features("clean train", self.train_clean)
        if stored is not None:
            for batch in batches:
                yield torch.from_numpy(np.concatenate([stored[i] for i in pick[batch]])).double()
            return
        for wavs, lengths, _, _ in self.loader(subset, batches):
            feats, frames = self.front_end(wavs.to(self.device), lengths.to(self.device))
            mask = torch.arange(feats.shape[1], device=feats.device)[None, :] < frames[:, None]
            yield feats[mask].double().cpu()

    def stored_features(self, what: str, samples: SampleSet) -> list[np.ndarray] | None:
        """The front end's features of a fixed input set from the disk cache (None without one)."""
        if self.disk_cache is None:
            return None
        key = (what, len(samples))
        if key not in self._stored:
            self._stored[key] = self.disk_cache.features(what, samples, self.config.workers)
        return self._stored[key]

    def evaluate(self, model: torch.nn.Module) -> dict:
        """WF1 and UAR on the clean validation set, on each level's validation mixes, and on
        all of them pooled into one set (the authors' selection set); the mean cross-entropy of
        each and the paired loss gaps; the gaps in every score on each half of the validation
        utterances (the feedback's split-half reliability)."""
        def outcomes(samples: SampleSet) -> tuple[np.ndarray, np.ndarray]:
            if not len(samples):
                return np.empty(0, np.int64), np.empty(0, np.float64)
            return predict_with_loss(model, self.features, samples, self.config.workers, self.cache)

        sets = [self.val_clean, *self.val_levels]
        predicted = [outcomes(s) for s in sets]
        clean_scores = classification_scores(self.val_clean.labels, predicted[0][0])  # once: WF1, UAR, per class
        clean = (clean_scores["wf1"], clean_scores["uar"])
        levels = [_scores(s.labels, p) for s, (p, _) in zip(self.val_levels, predicted[1:])]
        pool = [self.val_pool] if len(self.val_pool) else []  # no level index: the mixes pooled without levels
        pool_predicted = [outcomes(s) for s in pool]
        pooled = _scores(np.concatenate([s.labels for s in sets + pool]),
                         np.concatenate([p for p, _ in predicted + pool_predicted]))
        clean_loss = predicted[0][1]
        level_losses = [loss for _, loss in predicted[1:]]
        halves = [_half_gaps(self.val_clean.labels, predicted[0], self.val_levels, predicted[1:], self.val_sources,
                             self.val_half == h) for h in (0, 1)]
        return {"val_wf1_clean": clean[0], "val_uar_clean": clean[1],
                "val_wf1_levels": [s[0] for s in levels], "val_uar_levels": [s[1] for s in levels],
                "val_mixes_levels": [len(s) for s in self.val_levels],
                "val_wf1_pooled": pooled[0], "val_uar_pooled": pooled[1],
                "val_loss_clean": _mean(clean_loss), "val_loss_levels": [_mean(loss) for loss in level_losses],
                "val_loss_gaps": loss_gaps(clean_loss, level_losses, self.val_sources),
                "gap_halves": {score: [half[score] for half in halves] for score in GAP_SCORES},
                "gap_split_half_r": {score: pearson(*(half[score] for half in halves)) for score in GAP_SCORES},
                # what the levels' class mix alone would make of the WF1 gaps (docs/study.md, arm D)
                "val_f1_clean_per_class": [clean_scores["f1_per_class"][c] for c in EMOTIONS if clean_scores["f1_per_class"]],
                "val_class_counts_levels": [np.bincount(s.labels, minlength=len(EMOTIONS)).tolist()
                                            for s in self.val_levels]}

    def score_test_sets(self, model: torch.nn.Module) -> dict:
        """--test-every-epoch: WF1 and UAR of this epoch's model on every test condition. A
        diagnostic (how much the epoch a rule keeps matters on test data); it never selects,
        and it draws no random numbers the training reads (each epoch reseeds its streams)."""
        wf1, uar = {}, {}
        for name, samples in self.test_sets.items():
            scores = classification_scores(samples.labels, predict(model, self.features, samples,
                                                                   self.config.workers, self.cache))
            wf1[name], uar[name] = scores["wf1"], scores["uar"]
        return {"test_wf1": wf1, "test_uar": uar}

    def cache_fixed_inputs(self) -> None:
        """Features of the inputs that are the same every epoch (the validation sets, the clean
        train utterances, a baseline's fixed mixes), computed once, while they fit --cache-mb."""
        cap = self.config.cache_mb
        if cap == 0 and self.disk_cache is None:
            self.log("feature cache off (--cache-mb 0): every epoch decodes and featurizes all its inputs")
            return
        started = time.perf_counter()
        pad = ((torch.zeros(self.front_end.dim, device=self.device) - self.norm_mean) / self.norm_std).cpu()
        self.cache = FeatureCache(cap * 2**20, pad)
        parts = [("clean validation", self.val_clean)]
        parts += [(f"validation level {k + 1}", s) for k, s in enumerate(self.val_levels)]
        parts += [("validation mixes (pooled, no levels)", self.val_pool)] if len(self.val_pool) else []
        parts += [("clean train", self.train_clean)] + self.strategy.fixed_inputs()
        parts += [(f"test {name}", s) for name, s in self.test_sets.items()]  # last: never displaces the rest
        left_out = []
        for name, samples in parts:
            stored = self.stored_features(name, samples)
            if stored is not None:
                self.cache.add_stored(samples, stored, self.norm_mean, self.norm_std)
                continue
            frames = self.front_end.frames_for(torch.from_numpy(samples.lengths)).numpy()
            if not self.cache.add(samples, frames, self.features, self.config.workers):
                left_out.append(name)
        cached = len(parts) - len(left_out)
        self.log(f"feature cache: {cached} of {len(parts)} fixed input sets, {len(self.cache)} samples, "
                 f"{self.cache.nbytes / 2**20:.0f} MiB in {time.perf_counter() - started:.1f} s"
                 + (f"; not cached (over --cache-mb {cap}), decoded every epoch: {', '.join(left_out)}" if left_out else ""))

    # -- the loop ----------------------------------------------------------------------
    def run(self, resume: bool = False) -> RunState:
        cfg, out = self.config, Path(self.config.out)
        dist = Distributed(self.device)
        try:
            if not dist.main:
                return self._run(out, dist, resume)
            busy = f"{out}: another 'trainer run' is writing this run folder (lock {out / LOCK} is held); wait for it or pick another --out"
            with folder_lock(out, busy):
                return self._run(out, dist, resume)
        finally:
            dist.close()

    def _run(self, out: Path, dist: Distributed, resume: bool) -> RunState:
        cfg = self.config
        model, optimizer, state = self._start_or_resume(out, dist, resume)
        net = torch.nn.parallel.DistributedDataParallel(model) if dist.active else model
        while (state.epoch < cfg.max_epochs and state.since_best < cfg.patience
               and not (cfg.max_steps and state.steps >= cfg.max_steps)):
            self._epoch(net, model, optimizer, state, out, dist)
        if dist.main:
            why = ("max steps" if cfg.max_steps and state.steps >= cfg.max_steps else
                   "early stop" if state.since_best >= cfg.patience else "max epochs")
            self.log(f"done ({why}, {state.steps} steps): best validation WF1 ({self.selected_on}) {state.best_wf1:.4f} "
                     f"at epoch {state.best_epoch}; {out}")
        return state

    def _config_document(self, model, dist: Distributed) -> dict:
        cfg = self.config
        return {"format": RUN_FORMAT, **asdict(cfg), "n_levels": self.K, "n_train": self.N,
                "train_size_n": self.strategy.train_size_n(self.context),
                "level_index": str(self.data.index.path) if self.data.index else "",
                "metric_label": self.data.index.metric_label if self.data.index else "",
                "selected_on": self.selected_on, "val_pool_mixes": len(self.val_pool),
                "parameters": count_parameters(model), "world_size": dist.world, "train_level_sizes": self.data.train_level_sizes, **self.data_read()}

    def _start_or_resume(self, out: Path, dist: Distributed, resume: bool):
        """The model, optimizer and state a run starts from: new, or the last finished epoch
        of the run in ``out`` (refused when its settings or data differ)."""
        cfg = self.config
        torch.manual_seed(cfg.seed)
        model = new_model(self.front_end, cfg.hidden).to(self.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        state = RunState(weights=self.strategy.initial_weights(self.K))
        config_doc = self._config_document(model, dist)
        if resume and (out / LAST).is_file():
            saved = read_config(out)
            self._check_resumable(out, saved, config_doc, self.data.store)
            checkpoint = load_checkpoint(out / LAST, self.device)
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            self.norm_mean, self.norm_std = checkpoint["norm_mean"], checkpoint["norm_std"]
            state = RunState(**json.loads(checkpoint["state"]))
            self.log(f"resuming {out} after epoch {state.epoch}")
        else:
            if dist.main:
                if (out / LAST).is_file():
                    raise InputError(f"{out}: holds a run already; add --resume to continue it or pick another --out")
                out.mkdir(parents=True, exist_ok=True)
                write_json_atomic(out / CONFIG, config_doc)
            self.norm_mean, self.norm_std = self.estimate_normalisation()
        self.norm_mean, self.norm_std = self.norm_mean.to(self.device), self.norm_std.to(self.device)
        self.cache_fixed_inputs()
        if dist.main:
            self._write_records(out, state.records)  # drops lines of an epoch a kill interrupted
            what = f"{cfg.metric}-{cfg.quant} K={self.K}" if self.strategy.draws_levels else cfg.strategy
            if self.strategy.note:
                what += f" ({self.strategy.note})"
            fallback = (" (no level index and no validation mixes: the clean validation set)"
                        if self.selected_on != cfg.select else
                        f" (no level index: the clean validation utterances and {self.pool_note}, pooled)"
                        if len(self.val_pool) else "")
            self.log(f"{what}: N={self.N} clean train utterances, {config_doc['train_size_n']:g}N per epoch, train level "
                     f"sizes {self.data.train_level_sizes}, {count_parameters(model)} parameters, device {self.device}, "
                     f"{dist.world} process(es); selecting on {cfg.select}{fallback}")
        return model, optimizer, state

    @staticmethod
    def _check_resumable(out: Path, saved: dict, config_doc: dict, store) -> None:
        changed = [k for k in RESUME_KEYS if saved.get(k, IMPLIED_BEFORE.get(k)) != config_doc[k]]
        if changed:
            raise InputError(f"{out / CONFIG}: --resume with other settings ({', '.join(changed)}); "
                             f"use the original ones or another --out")
        # the data on the recorded identity's own basis (a run from before the samples basis)
        other = [what for key, what in IDENTITY_KEYS.items() if key in saved
                 and not (same_data(store, saved[key]) if key == "data_identity" else saved[key] == config_doc.get(key))]
        if other:
            raise InputError(f"{out}: --resume against other data ({', '.join(other)} changed since the run started); "
                             f"start a new run with another --out, or rebuild the data the run was trained on")

    def _epoch(self, net, model, optimizer, state: RunState, out: Path, dist: Distributed) -> None:
        """Train one epoch (or up to --max-steps), validate, select, checkpoint."""
        cfg = self.config
        epoch = state.epoch + 1
        started = time.perf_counter()
        torch.manual_seed(cfg.seed * DROPOUT_SEED_STRIDE + epoch)  # dropout: a function of (seed, epoch)
        drawn = self.strategy.epoch_samples(self.context, epoch, state.weights)
        batches = length_batches(drawn.samples.lengths, cfg.batch_size, self.rng(STREAM_BATCH_ORDER, epoch))
        if dist.active:  # every rank the same number of steps: drop the remainder batches
            batches = batches[: len(batches) - len(batches) % dist.world][dist.rank::dist.world]
        planned = len(batches)
        if cfg.max_steps:  # the last epoch may stop part-way
            batches = batches[: cfg.max_steps - state.steps]
        loss = self._train_epoch(net, optimizer, drawn.samples, batches, epoch, dist)
        state.steps += len(batches)
        metrics = self.evaluate(model)
        gaps = score_gaps(metrics, cfg.gap_score)
        # what Algorithm 1 reads: the gaps smoothed over epochs (B = 0: the gaps themselves)
        state.feedback = smooth(state.feedback, gaps, cfg.gap_smoothing)
        state.feedback_halves = smooth_halves(state.feedback_halves, metrics["gap_halves"][cfg.gap_score],
                                              cfg.gap_smoothing)
        if self.test_sets:
            metrics.update(self.score_test_sets(model))
        next_weights = self.strategy.next_weights(state.feedback, state.weights, cfg.floor)
        record = {"epoch": epoch, "loss": loss, **metrics, "gaps": gaps, "weights": list(state.weights),
                  "feedback": list(state.feedback), "feedback_split_half_r": pearson(*state.feedback_halves),
                  "weights_l1": weights_l1(state.weights, next_weights) if state.weights else None,
                  "drawn": drawn.drawn, "samples": len(drawn.samples) if len(batches) == planned else
                  sum(len(b) for b in batches) * dist.world, "steps": state.steps,
                  "seconds": time.perf_counter() - started}
        state.weights = next_weights
        state.epoch = epoch
        state.records.append(record)
        selection = metrics[f"val_wf1_{self.selected_on}"]
        improved = selection > state.best_wf1
        if improved:
            state.best_wf1, state.best_epoch, state.since_best = selection, epoch, 0
        else:
            state.since_best += 1
        if dist.main:
            self._checkpoint(out, model, optimizer, state, improved)
            for message in drawn.messages:
                self.log(f"epoch {epoch}: {message}")
            self.log(self._summary(record, improved))
            warning = self._feedback_warning(state.records)
            if warning:
                self.log(warning)
        dist.barrier()

    def _train_epoch(self, net, optimizer, samples: SampleSet, batches, epoch: int, dist: Distributed) -> float:
        from tqdm import tqdm

        net.train()
        total, seen = 0.0, 0
        bar = tqdm(total=sum(len(b) for b in batches), unit="utt", desc=f"epoch {epoch}", leave=False,
                   disable=not (self.progress and dist.main), dynamic_ncols=True)
        for feats, frames, labels, _ in feature_batches(samples, batches, self.features, self.config.workers,
                                                         self.cache, self.device):
            logits = net(feats, frames)
            loss = F.cross_entropy(logits, labels.to(self.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * labels.numel()
            seen += labels.numel()
            bar.update(labels.numel())
        bar.close()
        if dist.active:  # the epoch's mean loss over every rank's samples
            sums = torch.tensor([total, seen], dtype=torch.float64)
            torch.distributed.all_reduce(sums)
            total, seen = float(sums[0]), int(sums[1])
        return total / max(seen, 1)

    def _checkpoint(self, out: Path, model, optimizer, state: RunState, improved: bool) -> None:
        payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                   "norm_mean": self.norm_mean.cpu(), "norm_std": self.norm_std.cpu(),
                   "state": json.dumps(asdict(state)), "epoch": state.epoch}
        if improved:
            with atomic_output(out / BEST) as tmp:
                torch.save({"model": model.state_dict(), "norm_mean": self.norm_mean.cpu(),
                            "norm_std": self.norm_std.cpu(), "epoch": state.epoch, "steps": state.steps,
                            "config": json.dumps(asdict(self.config))}, tmp)
        with atomic_output(out / LAST) as tmp:  # last: the point a resume continues from
            torch.save(payload, tmp)
        self._write_records(out, state.records)

    @staticmethod
    def _write_records(out: Path, records: list[dict]) -> None:
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        write_bytes_atomic(out / EPOCHS, text.encode())

    def _feedback_warning(self, records: list[dict]) -> str:
        """One line at the first epoch at which the feedback Algorithm 1 reads is judged
        unreliable (``trainer.protocol.warn_unreliable_now``: the mean split-half r of the gap
        score in use after the burn-in, below FEEDBACK_RELIABILITY_MIN); else '' (and always
        for a strategy whose weights do not follow the feedback)."""
        if not self.strategy.adapts_weights:
            return ""
        score = self.config.gap_score
        rs = [(r.get("gap_split_half_r") or {}).get(score, float("nan")) for r in records]
        if not warn_unreliable_now(rs):
            return ""
        return (f"warning: the feedback looks like noise: the split-half r of the {score.upper()} gaps averages "
                f"{feedback_reliability(rs):.2f} over epochs {FEEDBACK_BURN_IN + 1}-{len(rs)}, below "
                f"{FEEDBACK_RELIABILITY_MIN:g} (two halves of the validation utterances disagree on which level is "
                f"hard); use more validation speakers (more validation utterances), or train --strategy superset "
                f"(no feedback)")

    def _summary(self, r: dict, improved: bool) -> str:
        levels = " ".join(f"{w:.3f}" for w in r["val_wf1_levels"])
        weights = f"weights [{' '.join(f'{w:.2f}' for w in r['weights'])}]  " if r["weights"] else ""
        if self.strategy.draws_levels:  # how far two halves of the validation set agree on the gaps
            score = self.config.gap_score
            weights += f"split-half r ({score.upper()}) {r['gap_split_half_r'][score]:.2f}  "
        levels = f"levels [{levels}]  " if levels else ""
        pooled = f"pooled {r['val_wf1_pooled']:.4f}  " if r["val_wf1_levels"] else ""
        return (f"epoch {r['epoch']:3d}  loss {r['loss']:.4f}  val WF1 clean {r['val_wf1_clean']:.4f}"
                f"{' *' if improved else '  '} UAR {r['val_uar_clean']:.4f}  {pooled}{levels}{weights}"
                f"{r['steps']} steps  {r['seconds']:.1f} s")


def _scores(labels: np.ndarray, predictions: np.ndarray) -> tuple[float, float]:
    """(WF1, UAR); NaN for an empty set."""
    if labels.size == 0:
        return float("nan"), float("nan")
    result = classification_scores(labels, predictions)
    return result["wf1"], result["uar"]


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else float("nan")


def _half_gaps(clean_labels: np.ndarray, clean: tuple[np.ndarray, np.ndarray], levels: list[SampleSet],
               outcomes: list[tuple[np.ndarray, np.ndarray]], sources: list[np.ndarray],
               keep: np.ndarray) -> dict[str, list[float]]:
    """The gap vector in every score (GAP_SCORES) measured on the clean validation utterances
    marked in ``keep`` and the mixes made from them; NaN for a level without such mixes."""
    predictions, losses = clean
    wf1_clean, uar_clean = _scores(clean_labels[keep], predictions[keep])
    out: dict[str, list[float]] = {"wf1": [], "uar": []}
    for samples, (mix_predictions, _), src in zip(levels, outcomes, sources):
        wf1, uar = _scores(samples.labels[keep[src]], mix_predictions[keep[src]])
        out["wf1"].append(wf1_clean - wf1)
        out["uar"].append(uar_clean - uar)
    out["loss"] = loss_gaps(losses, [mix_losses[keep[src]] for (_, mix_losses), src in zip(outcomes, sources)],
                            [src[keep[src]] for src in sources])
    return out
