"""The front-end registry (trainer/frontends.py), eGeMAPS (trainer/egemaps.py), Hugging Face
encoders (trainer/hf_encoder.py, on tiny random models saved to tmp folders), the shared
run-model loader (trainer/runmodel.py) and the on-disk feature cache (trainer/diskcache.py)."""
from __future__ import annotations

import importlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import trainer.cli
from trainer.features import FrontEnd
from trainer.frontends import FRONT_ENDS, FrontEndSpec, build_front_end, register_front_end

runner = CliRunner()
SR = 16000


def run_args(store: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--data", str(store), "--out", str(out), "--workers", "0", "--quiet", "--batch-size", "16",
            "--no-eval", "--val-per-level", "4", "--seed", "1", *extra]


def records(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("seconds")
    return rows


def voiced(seconds: float, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A vowel-like test clip: harmonics of a gliding f0 with a little noise."""
    t = np.arange(int(seconds * SR)) / SR
    f = f0 * (1 + 0.1 * np.sin(2 * np.pi * 1.5 * t))
    phase = 2 * np.pi * np.cumsum(f) / SR
    wav = sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.1
    return (wav + 0.003 * np.random.default_rng(seed).standard_normal(t.size)).astype(np.float32)


# ------------------------------------------------------------------ tiny encoders

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
             conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def save_tiny(folder: Path, family: str, norm: str, seed: int) -> Path:
    import transformers

    config_cls, model_cls = {"wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model),
                             "wavlm": (transformers.WavLMConfig, transformers.WavLMModel)}[family]
    torch.manual_seed(seed)
    model = model_cls(config_cls(**SMALL, feat_extract_norm=norm, do_stable_layer_norm=norm == "layer"))
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("encoders")
    out = {"wav2vec2": save_tiny(root / "w2v2", "wav2vec2", "group", 0),  # wav2vec2-base's norm
           "wavlm": save_tiny(root / "wavlm", "wavlm", "layer", 1),  # the layer-norm family
           "wav2vec2-other": save_tiny(root / "w2v2-other", "wav2vec2", "group", 2)}
    (out["wav2vec2"] / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True}))
    return out


@pytest.mark.parametrize("family", ["wav2vec2", "wavlm"])
@pytest.mark.parametrize("layer", [None, 1])
def test_hf_features_are_the_same_alone_and_padded(encoders, family, layer):
    front_end = build_front_end("hf", encoder=str(encoders[family]), layer=layer)
    assert front_end.layers == (3 if layer is None else 1) and front_end.dim == 32 * front_end.layers
    lengths = torch.tensor([16000, 9000, 4000])
    wavs = torch.from_numpy(np.stack([voiced(1.0, 100 + 40 * i, i) for i in range(3)]))
    wavs = wavs * (torch.arange(16000)[None, :] < lengths[:, None])  # zero padding
    feats, frames = front_end(wavs, lengths)
    assert frames.tolist() == [49, 27, 12] and feats.shape == (3, 49, front_end.dim)
    for b in range(3):
        alone, n = front_end(wavs[b : b + 1, : lengths[b]])
        assert int(n[0]) == int(frames[b])
        torch.testing.assert_close(feats[b, : n[0]], alone[0], atol=1e-4, rtol=1e-4)
        assert not feats[b, n[0]:].any()
    # what the model itself gives for an unpadded item (hidden state 1, or all three stacked)
    model = front_end.model
    wav = wavs[1:2, : lengths[1]]
    if front_end.do_normalize:
        wav = (wav - wav.mean()) / torch.sqrt(wav.var(unbiased=False) + 1e-7)
    with torch.no_grad():
        states = model(wav, output_hidden_states=True).hidden_states
    expected = states[1] if layer == 1 else torch.stack(states, 2).flatten(2)
    torch.testing.assert_close(feats[1, : frames[1]], expected[0], atol=1e-4, rtol=1e-4)


def test_hf_identity_is_the_models_checksums_and_errors_are_one_line(encoders, tmp_path):
    a = build_front_end("hf", encoder=str(encoders["wav2vec2"])).identity()
    b = build_front_end("hf", encoder=str(encoders["wav2vec2-other"])).identity()
    assert a["model_type"] == "wav2vec2" and a["layer"] == "weighted" and a["do_normalize"] is True
    assert set(a["sha256"]) == {"config.json", "preprocessor_config.json", "model.safetensors"}
    assert a["sha256"]["model.safetensors"] != b["sha256"]["model.safetensors"]
    assert build_front_end("hf", encoder=str(encoders["wav2vec2"]), layer=2).identity()["layer"] == 2
    from trainer._errors import FeatureError

    with pytest.raises(FeatureError, match="not a Hugging Face model folder"):
        build_front_end("hf", encoder=str(tmp_path))
    with pytest.raises(FeatureError, match="needs an encoder"):
        build_front_end("hf")
    with pytest.raises(FeatureError, match="has hidden states 0..2"):
        build_front_end("hf", encoder=str(encoders["wavlm"]), layer=3)
    with pytest.raises(FeatureError, match="logmel front end takes no --encoder"):
        build_front_end("logmel", encoder=str(encoders["wavlm"]))


# ------------------------------------------------------------------------ eGeMAPS

def test_egemaps_frames_are_opensmiles_own(tmp_path):
    opensmile = pytest.importorskip("opensmile")
    import soundfile as sf

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
    clips = [voiced(1.3, 120), voiced(0.7, 210, 1)]
    front_end = build_front_end("egemaps")
    assert front_end.dim == 25 and front_end.frame_rate == 100
    lengths = torch.tensor([c.size for c in clips])
    batch = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(c) for c in clips], batch_first=True)
    feats, frames = front_end(batch, lengths)
    for b, clip in enumerate(clips):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            own = smile.process_signal(clip, SR).to_numpy(dtype=np.float32)
        assert int(frames[b]) == own.shape[0] == 1 + (clip.size - 800) // 160
        np.testing.assert_array_equal(feats[b, : frames[b]].numpy(), own)
    assert own[:, smile.feature_names.index("F0semitoneFrom27.5Hz_sma3nz")].max() > 0  # voiced
    # trainer features --features egemaps writes the same frames
    sf.write(tmp_path / "clip.wav", clips[0], SR, subtype="FLOAT")
    result = runner.invoke(trainer.cli.app, ["features", str(tmp_path / "clip.wav"), "--features", "egemaps",
                                             "--out", str(tmp_path / "feats")])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.load(tmp_path / "feats" / "clip.npy"), feats[0, : frames[0]].numpy())
    too_short = torch.zeros(1, 959)
    from trainer._errors import FeatureError

    with pytest.raises(FeatureError, match="needs at least 960"):
        front_end(too_short)


# ------------------------------------------------------------------ the registry

class ToyFrontEnd(FrontEnd):
    """Log energy and zero-crossing rate of 20 ms frames, hop 10 ms (per item: padding-free)."""

    name = "toy"

    def __init__(self) -> None:
        super().__init__()
        self.dim, self.hop, self.min_samples = 2, 160, 320

    def frames_for(self, lengths):
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        return torch.where(lengths >= 320, 1 + (lengths - 320) // 160, 0)

    def _features(self, wavs, lengths, frame_lengths):
        frames = wavs.unfold(-1, 320, 160)
        energy = torch.log(frames.square().mean(-1) + 1e-8)
        zcr = (frames[..., 1:] * frames[..., :-1] < 0).float().mean(-1)
        return torch.stack([energy, zcr], -1)


@pytest.fixture
def toy_registered():
    register_front_end(FrontEndSpec("toy", ToyFrontEnd, "a toy of this test", "2", 100.0))
    importlib.reload(trainer.cli)  # the CLI derives its choices as it is imported
    yield trainer.cli.app
    del FRONT_ENDS["toy"]
    importlib.reload(trainer.cli)


def test_a_registered_front_end_appears_in_the_cli_and_trains(toy_registered, demo_store, tmp_path):
    for command in ("run", "features"):
        help_text = runner.invoke(toy_registered, [command, "--help"], terminal_width=200).output
        assert "toy" in help_text and "a toy of this test (2 dims, 100 frames/s)" in " ".join(help_text.split())
    out = tmp_path / "toy"
    result = runner.invoke(toy_registered, run_args(demo_store, out, "--strategy", "none", "--features", "toy",
                                                    "--max-epochs", "1"))
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["features"] == "toy" and config["front_end"] == {"name": "toy"}
    assert len(records(out)) == 1
    from trainer.runmodel import load_run_model

    loaded = load_run_model(out, torch.device("cpu"))  # the loader eval and bench use
    assert loaded.front_end.name == "toy" and loaded.model.n_features == 2
    bad = runner.invoke(toy_registered, run_args(demo_store, tmp_path / "bad", "--features", "toy", "--layer", "1"))
    assert bad.exit_code == 2 and "toy front end takes no --layer" in bad.output


# ------------------------------------------------------------- hf in training

def test_hf_run_trains_the_layer_weights_keeps_the_encoder_frozen_and_refuses_another_encoder(
        encoders, demo_store, tmp_path):
    from trainer.train import TrainConfig, Trainer

    encoder = encoders["wav2vec2"]
    out = tmp_path / "hf"
    config = TrainConfig(data=str(demo_store), out=str(out), strategy="metricaug", features="hf", encoder=str(encoder),
                         max_epochs=1, batch_size=16, lr=0.01, val_per_level=4, workers=0, seed=1)
    tr = Trainer(config, log=lambda line: None, progress=False)
    before = {k: v.clone() for k, v in tr.front_end.model.state_dict().items()}
    tr.run()
    after = tr.front_end.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the encoder never trained
    assert not any(p.requires_grad or p.grad is not None for p in tr.front_end.model.parameters())
    assert not tr.front_end.model.training
    saved = json.loads((out / "config.json").read_text())
    assert saved["front_end"]["name"] == "hf" and saved["encoder"] == str(encoder)
    weights = torch.load(out / "last.pt", weights_only=True)["model"]["layer_weights"]
    assert weights.shape == (3,) and weights.abs().max() > 1e-4  # started at 0 (uniform): trained
    assert len(records(out)) == 1

    # trainer run on the same run folder with another encoder: refused, one line
    other = runner.invoke(trainer.cli.app, run_args(demo_store, out, "--features", "hf", "--encoder",
                                                    str(encoders["wav2vec2-other"]), "--max-epochs", "2",
                                                    "--lr", "0.01", "--resume"))
    assert other.exit_code == 2 and "the front end" in other.output, other.output
    # the same encoder resumes; one chosen layer makes a model without layer weights
    same = runner.invoke(trainer.cli.app, run_args(demo_store, out, "--features", "hf", "--encoder", str(encoder),
                                                   "--max-epochs", "2", "--lr", "0.01", "--resume"))
    assert same.exit_code == 0, same.output
    assert len(records(out)) == 2
    one = runner.invoke(trainer.cli.app, run_args(demo_store, tmp_path / "layer1", "--features", "hf", "--encoder",
                                                  str(encoders["wavlm"]), "--layer", "1", "--max-epochs", "1",
                                                  "--strategy", "none"))
    assert one.exit_code == 0, one.output
    assert "layer_weights" not in torch.load(tmp_path / "layer1" / "best.pt", weights_only=True)["model"]


# -------------------------------------------------------------- disk cache

def test_disk_cache_is_reused_across_runs_and_not_for_a_changed_store(encoders, demo_store, tmp_path):
    cache = tmp_path / "cache"
    args = ("--strategy", "none", "--features", "hf", "--encoder", str(encoders["wavlm"]), "--layer", "2",
            "--max-epochs", "1", "--feature-cache", str(cache))
    first = runner.invoke(trainer.cli.app, run_args(demo_store, tmp_path / "a", *args))
    assert first.exit_code == 0, first.output
    assert "clean train computed" in first.output and "read from" not in first.output
    entries = sorted(cache.glob("hf-*/*/meta.json"))
    assert len(entries) == 2 + 5  # clean train, clean validation, 5 levels' validation mixes
    second = runner.invoke(trainer.cli.app, run_args(demo_store, tmp_path / "b", *args))
    assert second.exit_code == 0, second.output
    assert "computed" not in second.output and second.output.count("read from") == 7
    assert records(tmp_path / "a") == records(tmp_path / "b")  # the same features, the same run
    assert sorted(cache.glob("hf-*/*/meta.json")) == entries

    # a store whose shards changed (a rebuild): its sets are new entries, the old ones unread
    changed = tmp_path / "changed"
    shutil.copytree(demo_store, changed)
    manifest = json.loads((changed / "manifest.json").read_text())
    shard = next(s for s in manifest["shards"] if s["subset"] == "clean" and s["split"] == "validation")
    shard["sha256"] = "0" * 64
    (changed / "manifest.json").write_text(json.dumps(manifest))
    third = runner.invoke(trainer.cli.app, run_args(changed, tmp_path / "c", *args))
    assert third.exit_code == 0, third.output
    assert "clean validation computed" in third.output and "clean train read from" in third.output
    assert len(list(cache.glob("hf-*/*/meta.json"))) == 8

    # checked on read: an entry whose data changed is refused with one line
    data = entries[0].parent / "features.npy"
    data.chmod(0o644)
    with open(data, "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x00\x80\x7f")
    bad = runner.invoke(trainer.cli.app, run_args(demo_store, tmp_path / "d", *args))
    assert bad.exit_code == 2 and "feature cache data changed" in bad.output and str(entries[0].parent) in bad.output
