"""The MetricAug training loop (one readable loop, a config dataclass, no framework).

Epoch i trains on the N clean train utterances plus N mixes drawn from the train levels,
round(N * w_k) from level k (largest remainder, so exactly N). After the epoch the model is
evaluated on the clean validation set and on each level's validation mixes; the gaps
g_k = WF1_clean - WF1_k give the next weights by Algorithm 1 (``trainer.weights``).

Everything an epoch does is a function of (seed, epoch, the state at its start): the draw,
the batch order and dropout are seeded by (seed, epoch). The state is checkpointed after
every epoch (``last.pt``, with the epoch records), so ``--resume`` after a kill anywhere
restarts the unfinished epoch from that state and reaches the same result as a run that
was never interrupted. Under ``torchrun`` each rank trains on a disjoint share of the
epoch's batches (DDP); rank 0 writes the run folder.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from shards.atomic import atomic_output, write_bytes_atomic, write_json_atomic
from shards.errors import InputError
from shards.reader import open_store
from shards.vocab import COPYPASTE_MIX_SUBSET, COPYPASTE_SUBSET, EMOTIONS, FIXED_SNR_SUBSET, TRAIN, VALIDATION
from trainer.data import DEFAULT_CACHE_MB, FeatureCache, SampleSet, StoreData, feature_batches, length_batches
from trainer.features import FeatureError, build_front_end
from trainer.model import GRUTFM, count_parameters
from trainer.predict import classification_scores, make_loader, predict
from trainer.threads import thread_plan
from trainer.weights import LEVEL_FLOOR, algorithm1, plan_epoch_draw

RUN_FORMAT = "metricaug-run/1"
CONFIG, EPOCHS, LOG, LAST, BEST = "config.json", "epochs.jsonl", "train.log", "last.pt", "best.pt"
#: Clean train utterances used to estimate the feature normalisation (mean, std per dim).
NORM_UTTERANCES = 512


#: Training strategies, and the training set's size per epoch in multiples of N.
STRATEGIES = {"metricaug": 2.0, "none": 1.0, "fixed-snr": 7.0, "copypaste": 12.6}


@dataclass
class TrainConfig:
    data: str  # the store folder
    out: str  # the run folder
    strategy: str = "metricaug"
    metric: str = "stoi"
    quant: str = "gmm"
    levels: int | None = None  # K of the level index; None: the one there is
    hidden: int = 16
    features: str = "logmel"
    checkpoint: str | None = None  # vq-wav2vec checkpoint for features="vqwav2vec"
    batch_size: int = 32
    lr: float = 1e-3
    max_epochs: int = 100
    patience: int = 10
    floor: float = LEVEL_FLOOR
    val_per_level: int = 0  # 0: every validation mix of each level
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    threads: int = 0  # torch threads; 0: OMP_NUM_THREADS if set, else the cores the workers leave
    cache_mb: int = DEFAULT_CACHE_MB  # features of the fixed inputs kept in memory; 0: none


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if name != "cpu" and not name.startswith("cuda"):
        raise InputError(f"--device {name!r}: expected auto, cpu or cuda[:N]")
    return torch.device(name)


def _rng(seed: int, *parts: int) -> np.random.Generator:
    return np.random.default_rng([seed, *parts])


@dataclass
class RunState:
    """What a checkpoint holds besides the weights: enough to continue exactly."""

    epoch: int = 0  # epochs completed
    weights: list[float] = field(default_factory=list)  # the next epoch's level weights
    best_wf1: float = -1.0
    best_epoch: int = 0
    since_best: int = 0
    records: list[dict] = field(default_factory=list)  # one per completed epoch


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
        if config.strategy not in STRATEGIES:
            raise InputError(f"--strategy {config.strategy!r}: expected one of {', '.join(STRATEGIES)}")
        self.metricaug = config.strategy == "metricaug"
        store = open_store(config.data)
        try:
            index = store.level_index(config.metric, config.quant, config.levels)
        except InputError:
            if self.metricaug:
                raise
            index = None  # the baselines draw nothing by level; with an index they report per-level WF1
        self.data = StoreData(store, index)
        self.K = index.n_levels if index else 0
        if self.metricaug and self.K * config.floor > 1:
            raise InputError(f"{index.path}: {self.K} levels cannot each keep the floor {config.floor}")
        if self.metricaug and sum(self.data.train_level_sizes) == 0:
            raise InputError(f"{index.path}: no train mix has a level; run 'prep score {config.data} "
                             f"--metric {config.metric} --quant {config.quant} --levels K' with fewer levels")
        try:
            self.front_end = build_front_end(config.features, checkpoint=config.checkpoint, device=str(self.device))
        except FeatureError as exc:
            raise InputError(str(exc)) from None
        self.train_clean = self.data.clean(TRAIN)
        self.val_clean = self.data.clean(VALIDATION)
        self.val_levels = [self._validation_level(k) for k in range(1, self.K + 1)]
        self.N = len(self.train_clean)
        #: a baseline's samples beyond the clean train utterances, the same every epoch
        self.fixed = None
        if config.strategy == "fixed-snr":
            self.fixed = self.data.subset(FIXED_SNR_SUBSET, TRAIN)
            if len(self.fixed) == 0:
                raise InputError(f"{store.path}: no fixed-SNR mixes; build them with 'prep fixed-snr --corpus ... "
                                 f"--out {store.path.parent}'")
        elif config.strategy == "copypaste":
            parts = [self.data.subset(COPYPASTE_SUBSET, TRAIN), self.data.subset(COPYPASTE_MIX_SUBSET, TRAIN)]
            if min(len(p) for p in parts) == 0:
                raise InputError(f"{store.path}: no CopyPaste samples; build them with 'prep copypaste --corpus ... "
                                 f"--out {store.path.parent}'")
            self.fixed = SampleSet.concat(parts)

    # -- data --------------------------------------------------------------------------
    def _validation_level(self, level: int) -> SampleSet:
        size = len(self.data.members(VALIDATION, level))
        m = self.config.val_per_level
        if m and size > m:  # a fixed, seeded subset: the same mixes every epoch
            pick = np.sort(_rng(self.config.seed, 7, level).choice(size, m, replace=False))
            return self.data.level_samples(VALIDATION, level, pick)
        return self.data.level_samples(VALIDATION, level)

    def epoch_samples(self, epoch: int, weights: list[float]) -> tuple[SampleSet, list[int], list[str]]:
        """The epoch's training set: the clean utterances plus the strategy's mixes."""
        if self.config.strategy == "none":
            return self.train_clean, [], []
        if self.fixed is not None:  # fixed-snr, copypaste
            return SampleSet.concat([self.train_clean, self.fixed]), [], []
        draw = plan_epoch_draw(self.data.train_level_sizes, self.N, weights, _rng(self.config.seed, 1, epoch))
        parts = [self.train_clean] + [self.data.level_samples(TRAIN, k + 1, idx)
                                      for k, idx in enumerate(draw.indices) if idx.size]
        return SampleSet.concat(parts), list(draw.counts), draw.messages

    def loader(self, samples: SampleSet, batches: list[np.ndarray]):
        return make_loader(samples, batches, self.config.workers)

    # -- model -------------------------------------------------------------------------
    def features(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, frames = self.front_end(wavs.to(self.device), lengths.to(self.device))
        return (feats - self.norm_mean) / self.norm_std, frames

    def estimate_normalisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std per feature dimension over valid frames of (up to NORM_UTTERANCES)
        clean train utterances: fixed for the run and stored in its checkpoints."""
        n = min(self.N, NORM_UTTERANCES)
        pick = np.sort(_rng(self.config.seed, 3).choice(self.N, n, replace=False))
        subset = SampleSet(self.train_clean.sources, self.train_clean.source_of[pick],
                           self.train_clean.index_in_source[pick], self.train_clean.labels[pick],
                           self.train_clean.lengths[pick])
        total = torch.zeros(self.front_end.dim, dtype=torch.float64)
        total_sq = torch.zeros_like(total)
        count = 0
        for wavs, lengths, _, _ in self.loader(subset, length_batches(subset.lengths, 64, None)):
            feats, frames = self.front_end(wavs.to(self.device), lengths.to(self.device))
            mask = torch.arange(feats.shape[1], device=feats.device)[None, :] < frames[:, None]
            valid = feats[mask].double().cpu()
            total += valid.sum(0)
            total_sq += (valid ** 2).sum(0)
            count += valid.shape[0]
        mean = total / count
        std = (total_sq / count - mean ** 2).clamp_min(1e-10).sqrt()
        return mean.float(), std.float()

    def evaluate(self, model: torch.nn.Module) -> dict:
        """WF1 and UAR on the clean validation set and WF1 on each level's validation mixes."""
        def scores(samples: SampleSet) -> tuple[float, float]:
            if len(samples) == 0:
                return float("nan"), float("nan")
            predictions = predict(model, self.features, samples, self.config.workers, self.cache)
            result = classification_scores(samples.labels, predictions)
            return result["wf1"], result["uar"]

        wf1_clean, uar_clean = scores(self.val_clean)
        level_scores = [scores(s) for s in self.val_levels]
        return {"val_wf1_clean": wf1_clean, "val_uar_clean": uar_clean,
                "val_wf1_levels": [s[0] for s in level_scores], "val_uar_levels": [s[1] for s in level_scores],
                "val_mixes_levels": [len(s) for s in self.val_levels]}

    def cache_fixed_inputs(self) -> None:
        """Features of the inputs that are the same every epoch (the validation sets, the clean
        train utterances, a baseline's fixed mixes), computed once, while they fit --cache-mb."""
        cap = self.config.cache_mb
        if cap == 0:
            self.log("feature cache off (--cache-mb 0): every epoch decodes and featurizes all its inputs")
            return
        started = time.perf_counter()
        pad = ((torch.zeros(self.front_end.dim, device=self.device) - self.norm_mean) / self.norm_std).cpu()
        self.cache = FeatureCache(cap * 2**20, pad)
        parts = [("clean validation", self.val_clean)]
        parts += [(f"validation level {k + 1}", s) for k, s in enumerate(self.val_levels)]
        parts += [("clean train", self.train_clean)] + ([("fixed train mixes", self.fixed)] if self.fixed is not None else [])
        left_out = []
        for name, samples in parts:
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
            return self._run(cfg, out, dist, resume)
        finally:
            dist.close()

    def _run(self, cfg: TrainConfig, out: Path, dist: Distributed, resume: bool) -> RunState:
        torch.manual_seed(cfg.seed)
        model = GRUTFM(self.front_end.dim, cfg.hidden, len(EMOTIONS)).to(self.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        state = RunState(weights=[1.0 / self.K] * self.K if self.metricaug else [])
        config_doc = {"format": RUN_FORMAT, **asdict(cfg), "n_levels": self.K, "n_train": self.N,
                      "train_size_n": STRATEGIES[cfg.strategy] if self.fixed is None else 1 + len(self.fixed) / self.N,
                      "level_index": str(self.data.index.path) if self.data.index else "", "parameters": count_parameters(model),
                      "world_size": dist.world, "train_level_sizes": self.data.train_level_sizes}

        if resume and (out / LAST).is_file():
            checkpoint = torch.load(out / LAST, map_location=self.device, weights_only=True)
            saved = json.loads((out / CONFIG).read_text())
            changed = [k for k in ("data", "strategy", "metric", "quant", "hidden", "features", "batch_size", "lr", "seed", "floor")
                       if saved.get(k) != config_doc[k]]
            if changed:
                raise InputError(f"{out / CONFIG}: --resume with other settings ({', '.join(changed)}); "
                                 f"use the original ones or another --out")
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
            what = f"{cfg.metric}-{cfg.quant} K={self.K}" if self.metricaug else cfg.strategy
            self.log(f"{what}: N={self.N} clean train utterances, {config_doc['train_size_n']:g}N per epoch, train level "
                     f"sizes {self.data.train_level_sizes}, {count_parameters(model)} parameters, device {self.device}, "
                     f"{dist.world} process(es)")
        net = torch.nn.parallel.DistributedDataParallel(model) if dist.active else model

        while state.epoch < cfg.max_epochs and state.since_best < cfg.patience:
            epoch = state.epoch + 1
            started = time.perf_counter()
            torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout: a function of (seed, epoch)
            samples, drawn, messages = self.epoch_samples(epoch, state.weights)
            batches = length_batches(samples.lengths, cfg.batch_size, _rng(cfg.seed, 2, epoch))
            if dist.active:  # every rank the same number of steps: drop the remainder batches
                batches = batches[: len(batches) - len(batches) % dist.world][dist.rank::dist.world]
            loss = self._train_epoch(net, optimizer, samples, batches, epoch, dist)
            metrics = self.evaluate(model)
            gaps = [0.0 if math.isnan(w) else metrics["val_wf1_clean"] - w for w in metrics["val_wf1_levels"]]
            record = {"epoch": epoch, "loss": loss, **metrics, "gaps": gaps, "weights": list(state.weights),
                      "drawn": drawn, "samples": len(samples), "seconds": time.perf_counter() - started}
            if self.metricaug:
                state.weights = [float(w) for w in algorithm1(gaps, cfg.floor)]
            state.epoch = epoch
            state.records.append(record)
            improved = metrics["val_wf1_clean"] > state.best_wf1
            if improved:
                state.best_wf1, state.best_epoch, state.since_best = metrics["val_wf1_clean"], epoch, 0
            else:
                state.since_best += 1
            if dist.main:
                self._checkpoint(out, model, optimizer, state, improved)
                for message in messages:
                    self.log(f"epoch {epoch}: {message}")
                self.log(self._summary(record, improved))
            dist.barrier()
        if dist.main:
            why = "early stop" if state.since_best >= cfg.patience else "max epochs"
            self.log(f"done ({why}): best validation WF1 {state.best_wf1:.4f} at epoch {state.best_epoch}; {out}")
        return state

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
                            "norm_std": self.norm_std.cpu(), "epoch": state.epoch,
                            "config": json.dumps(asdict(self.config))}, tmp)
        with atomic_output(out / LAST) as tmp:  # last: the point a resume continues from
            torch.save(payload, tmp)
        self._write_records(out, state.records)

    @staticmethod
    def _write_records(out: Path, records: list[dict]) -> None:
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        write_bytes_atomic(out / EPOCHS, text.encode())

    def _summary(self, r: dict, improved: bool) -> str:
        levels = " ".join(f"{w:.3f}" for w in r["val_wf1_levels"])
        weights = f"weights [{' '.join(f'{w:.2f}' for w in r['weights'])}]  " if r["weights"] else ""
        levels = f"levels [{levels}]  " if levels else ""
        return (f"epoch {r['epoch']:3d}  loss {r['loss']:.4f}  val WF1 clean {r['val_wf1_clean']:.4f}"
                f"{' *' if improved else '  '} UAR {r['val_uar_clean']:.4f}  {levels}{weights}{r['seconds']:.1f} s")
