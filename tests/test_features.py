"""Feature front ends (trainer/features.py), fairseq checkpoint reading
(trainer/fairseq_ckpt.py) and ``trainer features``."""
from __future__ import annotations

import argparse
import builtins
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from trainer.cli import app
from trainer.fairseq_ckpt import UnknownObject, load_fairseq_checkpoint, read_torch_file
from trainer.features import (
    FeatureError,
    LogMelFrontEnd,
    VqWav2VecFrontEnd,
    build_front_end,
    parse_conv_layers,
)

# The vq-wav2vec geometry with 32 channels: the same strides and receptive field, cheap.
SMALL_LAYERS = "[(32, 10, 5), (32, 8, 4), (32, 4, 2), (32, 4, 2), (32, 4, 2), (32, 1, 1), (32, 1, 1), (32, 1, 1)]"


def small_args(**overrides) -> argparse.Namespace:
    settings = dict(
        arch="wav2vec",
        conv_feature_layers=SMALL_LAYERS,
        conv_aggregator_layers="[(32, 2, 1), (32, 3, 1)]",
        activation="gelu",
        log_compression=True,
        skip_connections_feat=False,
        skip_connections_agg=True,
        residual_scale=0.5,
        non_affine_group_norm=False,
        vq_type="kmeans",
    )
    settings.update(overrides)
    return argparse.Namespace(**settings)


def random_state(args: argparse.Namespace, seed: int = 0) -> dict[str, torch.Tensor]:
    """A fairseq-like state dict: feature extractor weights plus keys that must be ignored."""
    torch.manual_seed(seed)
    front_end = VqWav2VecFrontEnd(vars(args))
    state = {}
    for key, shape in front_end.expected_shapes().items():
        value = torch.randn(shape) * (0.3 if key.endswith("0.weight") else 0.1)
        state[key] = value + (1.0 if key.endswith("2.weight") else 0.0)
    state["feature_aggregator.conv_layers.0.1.weight"] = torch.randn(32, 32, 2)
    state["vector_quantizer.embedding"] = torch.randn(32, 2, 16)
    return state


class _FakeModule:
    """Puts a stand-in module into sys.modules while saving, so the checkpoint names a
    class (like fairseq's meters) that does not exist when it is loaded."""

    def __init__(self, name: str, **members):
        self.module = types.ModuleType(name)
        for key, value in members.items():
            value.__module__ = name
            value.__qualname__ = key
            setattr(self.module, key, value)

    def __enter__(self):
        sys.modules[self.module.__name__] = self.module
        return self.module

    def __exit__(self, *exc):
        del sys.modules[self.module.__name__]


def save_fairseq_checkpoint(path: Path, args=None, state=None, legacy=False, **extra) -> Path:
    args = small_args() if args is None else args
    state = random_state(args) if state is None else state
    meter = type("AverageMeter", (), {})
    with _FakeModule("fakeseq_meters", AverageMeter=meter) as module:
        m = module.AverageMeter()
        m.__dict__.update(val=None, sum=0, count=0)
        ckpt = {
            "args": args,
            "model": state,
            "extra_state": {"train_meters": {"loss": m}},
            "optimizer_history": [{"criterion_name": "BinaryCrossEntropyCriterion", "num_updates": 0}],
        }
        ckpt.update(extra)
        torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    return path


def speechlike(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    return (0.3 * torch.sin(2 * torch.pi * 220 * t) * torch.rand(1, generator=g) + 0.05 * torch.randn(n, generator=g)).float()


def padded_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    wavs = torch.zeros(len(lengths), max(lengths) + 731)  # extra padding on every item
    for i, n in enumerate(lengths):
        wavs[i, :n] = speechlike(n, seed + i)
        wavs[i, n:] = 0.5  # padding that is not silence must not leak in either
    return wavs, torch.tensor(lengths)


# ------------------------------------------------------------------- golden (fairseq)

def test_golden_vqwav2vec_matches_fairseq(golden_dir):
    gold = golden_dir / "vqwav2vec"
    about = json.loads((gold / "README.json").read_text())
    inputs = np.load(gold / "inputs.npz")
    names = list(inputs.keys())
    assert len(about["cases"]) == 3
    for case in about["cases"]:
        front_end = build_front_end("vqwav2vec", gold / case["checkpoint"])
        expected = np.load(gold / case["expected"])
        for name in names:
            feats, frames = front_end(torch.from_numpy(inputs[name])[None])
            assert (front_end.dim, int(frames[0])) == expected[name].shape == tuple(case["shapes"][name])
            np.testing.assert_allclose(feats[0].numpy().T, expected[name], atol=1e-5, rtol=0, err_msg=f"{case['checkpoint']} {name}")
        # the same inputs padded into one batch
        wavs = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(inputs[n]) for n in names], batch_first=True)
        feats, frames = front_end(wavs, torch.tensor([len(inputs[n]) for n in names]))
        for i, name in enumerate(names):
            np.testing.assert_allclose(feats[i, : frames[i]].numpy().T, expected[name], atol=1e-5, rtol=0)
    assert not any(m == "fairseq" or m.startswith("fairseq.") for m in sys.modules)


def test_golden_checkpoint_contents(golden_dir):
    ckpt = load_fairseq_checkpoint(golden_dir / "vqwav2vec" / "vqw2v_relu_skipfeat.pt")
    assert ckpt.settings_form == "args"
    assert ckpt.model_settings["skip_connections_feat"] is True
    assert ckpt.replaced == {"fairseq.logging.meters.AverageMeter"}
    assert any(k.startswith("feature_aggregator.") for k in ckpt.state_dict)


# ----------------------------------------------------------------------- safety

def _evil_payloads(marker: Path):
    class ShellPayload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    class ExecPayload:
        def __reduce__(self):
            return (builtins.exec, (f"open({str(marker)!r}, 'w').write('pwned')",))

    class ImportPayload:
        def __reduce__(self):
            return (builtins.__import__, ("this",))

    return [ShellPayload(), ExecPayload(), ImportPayload()]


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_code_in_a_checkpoint_never_runs(tmp_path, legacy):
    marker = tmp_path / "marker"
    path = save_fairseq_checkpoint(
        tmp_path / "evil.pt", legacy=legacy, extra_state={"payload": _evil_payloads(marker)}
    )
    ckpt = load_fairseq_checkpoint(path)
    assert not marker.exists()
    assert {"posix.system", "builtins.exec", "builtins.__import__"} <= ckpt.replaced
    raw = read_torch_file(path)
    assert all(isinstance(p, UnknownObject) for p in raw.obj["extra_state"]["payload"])
    # the front end still builds from such a file: only its weights are used
    assert build_front_end("vqwav2vec", path).dim == 32
    assert not marker.exists()
    # the payload is live: an unrestricted torch.load does run it
    if os.name == "posix":
        torch.load(path, weights_only=False)
        assert marker.exists()


def test_evil_payload_in_place_of_a_tensor_is_refused(tmp_path):
    marker = tmp_path / "marker"
    state = random_state(small_args())
    state["feature_extractor.conv_layers.0.0.weight"] = _evil_payloads(marker)[0]
    path = save_fairseq_checkpoint(tmp_path / "evil.pt", state=state)
    with pytest.raises(FeatureError, match="conv_layers.0.0.weight missing"):
        build_front_end("vqwav2vec", path)
    assert not marker.exists()


# ------------------------------------------------------------- checkpoint formats

def test_legacy_and_zip_formats_load_the_same(tmp_path):
    args = small_args()
    state = random_state(args)
    base = torch.arange(12.0)
    state["extra.view_a"], state["extra.view_b"] = base[2:6], base.view(3, 4).t()  # shared storage
    state["extra.long"] = torch.arange(5)
    for legacy in (False, True):
        ckpt = load_fairseq_checkpoint(save_fairseq_checkpoint(tmp_path / f"c{legacy}.pt", args, state, legacy=legacy))
        assert vars(args) == ckpt.model_settings
        for key, value in state.items():
            assert torch.equal(ckpt.state_dict[key], value), key
        assert ckpt.state_dict["extra.long"].dtype == torch.int64


def test_cfg_form_checkpoint(tmp_path):
    args = small_args(activation="relu", skip_connections_feat=True)
    state = random_state(args)
    cfg = {"model": dict(vars(args), _name="wav2vec"), "task": {"_name": "audio_pretraining"}}
    del cfg["model"]["arch"]
    path = tmp_path / "cfg.pt"
    torch.save({"args": None, "cfg": cfg, "model": state}, path)
    from_cfg = build_front_end("vqwav2vec", path)
    from_args = build_front_end("vqwav2vec", save_fairseq_checkpoint(tmp_path / "args.pt", args, state))
    wav = speechlike(8000, 1)[None]
    assert from_cfg.skip_connections and from_cfg.activation == "relu"
    assert torch.equal(from_cfg(wav)[0], from_args(wav)[0])


def test_conv_layer_expressions():
    assert parse_conv_layers("[(512, 10, 5)] + [(512, 8, 4)] + [(512, 4, 2)] * 3") == [
        (512, 10, 5), (512, 8, 4), (512, 4, 2), (512, 4, 2), (512, 4, 2)
    ]
    for bad in ("__import__('os').system('true')", "[(1, 2)]", "[]", "[(1, 2, 3)] * 10**9"):
        with pytest.raises((ValueError, SyntaxError)):
            parse_conv_layers(bad)


# ------------------------------------------------------------------------ errors

def test_user_errors_name_the_file(tmp_path):
    with pytest.raises(FeatureError, match="missing.pt: checkpoint file not found"):
        build_front_end("vqwav2vec", tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(FeatureError, match="junk.pt: not a"):
        build_front_end("vqwav2vec", junk)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, plain)
    with pytest.raises(FeatureError, match="plain.pt: not a fairseq checkpoint"):
        build_front_end("vqwav2vec", plain)
    with pytest.raises(FeatureError, match="unknown front end 'mfcc'"):
        build_front_end("mfcc")
    with pytest.raises(FeatureError, match="needs a checkpoint"):
        build_front_end("vqwav2vec")
    w2v2 = save_fairseq_checkpoint(tmp_path / "w2v2.pt", small_args(arch="wav2vec2"))
    with pytest.raises(FeatureError, match="w2v2.pt: model architecture 'wav2vec2'"):
        build_front_end("vqwav2vec", w2v2)


def test_keys_and_shapes_must_fit(tmp_path):
    args = small_args()
    state = random_state(args)
    state["feature_extractor.conv_layers.1.0.weight"] = torch.zeros(32, 32, 7)
    path = save_fairseq_checkpoint(tmp_path / "shape.pt", args, state)
    with pytest.raises(FeatureError, match=r"shape.pt: feature_extractor.conv_layers.1.0.weight has shape \(32, 32, 7\).*expects \(32, 32, 8\)"):
        build_front_end("vqwav2vec", path)
    state = random_state(args)
    del state["feature_extractor.conv_layers.7.2.bias"]
    with pytest.raises(FeatureError, match="conv_layers.7.2.bias missing"):
        build_front_end("vqwav2vec", save_fairseq_checkpoint(tmp_path / "missing_key.pt", args, state))
    # affine weights in a checkpoint that says non-affine
    path = save_fairseq_checkpoint(tmp_path / "nonaffine.pt", small_args(non_affine_group_norm=True), random_state(args))
    with pytest.raises(FeatureError, match="unexpected key feature_extractor.conv_layers.0.2"):
        build_front_end("vqwav2vec", path)


def test_input_shorter_than_receptive_field(tmp_path):
    front_end = build_front_end("vqwav2vec", save_fairseq_checkpoint(tmp_path / "c.pt"))
    assert front_end.min_samples == 465
    assert front_end(torch.zeros(1, 465) + 0.1)[1].tolist() == [1]
    with pytest.raises(FeatureError, match="input 1 has 464 samples.*at least 465"):
        front_end(torch.ones(2, 1000), torch.tensor([1000, 464]))
    with pytest.raises(FeatureError, match="at least 400"):
        LogMelFrontEnd()(torch.ones(1, 399))


# -------------------------------------------------------------- padding invariance

# lengths chosen so fairseq's skip-connection step (r_tsz // tsz) differs between items
LENGTHS = [16000, 465, 1200, 9137, 545, 3001]


@pytest.mark.parametrize(
    "overrides",
    [{}, {"activation": "relu", "skip_connections_feat": True}, {"log_compression": False, "non_affine_group_norm": True}],
    ids=["gelu_log", "relu_skip", "nolog_nonaffine"],
)
def test_vqwav2vec_padding_never_changes_features(tmp_path, overrides):
    args = small_args(**overrides)
    front_end = build_front_end("vqwav2vec", save_fairseq_checkpoint(tmp_path / "c.pt", args))
    wavs, lengths = padded_batch(LENGTHS)
    feats, frames = front_end(wavs, lengths)
    assert frames.tolist() == front_end.frames_for(lengths).tolist()
    assert feats.shape == (len(LENGTHS), int(frames.max()), 32)
    for i, n in enumerate(LENGTHS):
        alone, alone_frames = front_end(wavs[i : i + 1, :n])
        assert alone.shape[1] == alone_frames[0] == frames[i]
        torch.testing.assert_close(feats[i, : frames[i]], alone[0], atol=1e-5, rtol=0)
        assert not feats[i, frames[i] :].any()  # frames past the item are zero


def test_skip_step_differs_between_items_in_a_batch():
    # fairseq subsamples the residual every (r_tsz // tsz) frames of the item itself:
    # 545 samples -> 108, 26, 12, 5, 1 frames, so the last strided layer steps by 5,
    # while in a batch padded to 16000 samples (-> 9, 4 frames) it steps by 2.
    front_end = VqWav2VecFrontEnd(vars(small_args(skip_connections_feat=True)))
    assert front_end.frames_for(torch.tensor([545, 16000])).tolist() == [1, 98]
    residual = torch.arange(9.0).expand(1, 2, 9).repeat(2, 1, 1)
    picked = front_end._subsample(residual, torch.tensor([5, 9]), torch.tensor([1, 4]), 4)
    assert picked[0, 0, :1].tolist() == [0.0] and picked[1, 0].tolist() == [0.0, 2.0, 4.0, 6.0]
    picked = front_end._subsample(residual, torch.tensor([9, 9]), torch.tensor([3, 3]), 3)
    assert picked[0, 0].tolist() == [0.0, 3.0, 6.0]


def test_frames_for_is_the_conv_formula():
    front_end = VqWav2VecFrontEnd()  # the real 512-channel geometry (random weights)
    assert front_end.dim == 512 and front_end.hop == 160 and front_end.min_samples == 465
    for n in (465, 1200, 16000, 23457):
        expected = n
        for _, k, s in parse_conv_layers(SMALL_LAYERS):
            expected = (expected - k) // s + 1
        assert front_end.frames_for(torch.tensor([n])).item() == expected
    assert front_end.frames_for(torch.tensor([16000, 23457, 1200])).tolist() == [98, 144, 5]


def test_logmel_padding_and_frames():
    front_end = build_front_end("logmel")
    assert front_end.dim == 80
    wavs, lengths = padded_batch([16000, 400, 559, 560, 12345])
    feats, frames = front_end(wavs, lengths)
    assert frames.tolist() == [1 + (n - 400) // 160 for n in lengths.tolist()] == [98, 1, 1, 2, 75]
    for i, n in enumerate(lengths.tolist()):
        alone, _ = front_end(wavs[i : i + 1, :n])
        torch.testing.assert_close(feats[i, : frames[i]], alone[0], atol=1e-5, rtol=0)
        assert not feats[i, frames[i] :].any()


def test_logmel_is_librosa_log_mel():
    import librosa

    wav = speechlike(8000, 3).numpy()
    ours, frames = LogMelFrontEnd()(torch.from_numpy(wav)[None])
    # librosa frames are n_fft (512) long with the 400-sample window in their middle:
    # shifting the signal by 56 samples lines its frames up with ours
    shifted = np.concatenate([np.zeros(56, np.float32), wav, np.zeros(56, np.float32)])
    mel = librosa.feature.melspectrogram(
        y=shifted, sr=16000, n_fft=512, win_length=400, hop_length=160, n_mels=80, center=False, power=2.0
    )
    reference = np.log(mel + 1e-6).T[: int(frames[0])]
    np.testing.assert_allclose(ours[0].numpy(), reference, atol=1e-3, rtol=0)


def test_front_ends_are_gradient_free_and_usable_in_training():
    front_end = build_front_end("logmel")
    feats, _ = front_end(torch.randn(2, 4000, requires_grad=True))
    assert not feats.requires_grad
    layer = torch.nn.Linear(80, 4)
    layer(feats).sum().backward()  # not an inference-mode tensor
    assert layer.weight.grad is not None


# --------------------------------------------------------------------------- CLI

def _write_wavs(folder: Path, lengths: list[int], sr: int = 16000) -> list[Path]:
    paths = []
    for i, n in enumerate(lengths):
        path = folder / f"utt{i}.wav"
        sf.write(path, speechlike(n, i).numpy(), sr)
        paths.append(path)
    return paths


def _run(args: list[str]):
    return CliRunner().invoke(app, args)


def test_cli_features_logmel_and_vqwav2vec(tmp_path):
    wavs = _write_wavs(tmp_path, [16000, 7000, 3000])
    out = tmp_path / "mel"
    result = _run(["features", "--out", str(out), "--batch-size", "2", *map(str, wavs)])
    assert result.exit_code == 0, result.output
    front_end = LogMelFrontEnd()
    for path in wavs:
        saved = np.load(out / f"{path.stem}.npy")
        wav = sf.read(path, dtype="float32")[0]
        assert saved.shape == (1 + (len(wav) - 400) // 160, 80) and saved.dtype == np.float32
        np.testing.assert_allclose(saved, front_end(torch.from_numpy(wav)[None])[0][0].numpy(), atol=1e-5)

    ckpt = save_fairseq_checkpoint(tmp_path / "vq.pt")
    out = tmp_path / "vq"
    result = _run(["features", "--features", "vqwav2vec", "--checkpoint", str(ckpt), "--out", str(out), *map(str, wavs)])
    assert result.exit_code == 0, result.output
    assert [np.load(out / f"{p.stem}.npy").shape for p in wavs] == [(98, 32), (41, 32), (16, 32)]


@pytest.mark.parametrize(
    "case",
    ["missing_audio", "no_checkpoint", "bad_checkpoint", "short_audio", "unreadable_audio"],
)
def test_cli_user_errors_exit_2_with_one_line(tmp_path, case):
    (good,) = _write_wavs(tmp_path, [4000])
    args = ["features", "--out", str(tmp_path / "out")]
    if case == "missing_audio":
        args += [str(tmp_path / "nope.wav")]
        expected = "nope.wav: no such file"
    elif case == "no_checkpoint":
        args += ["--features", "vqwav2vec", str(good)]
        expected = "needs a checkpoint"
    elif case == "bad_checkpoint":
        junk = tmp_path / "junk.pt"
        junk.write_bytes(b"\x00" * 100)
        args += ["--features", "vqwav2vec", "--checkpoint", str(junk), str(good)]
        expected = "junk.pt: not a"
    elif case == "short_audio":
        short = tmp_path / "short.wav"
        sf.write(short, speechlike(300, 0).numpy(), 16000)
        args += [str(good), str(short)]
        expected = "short.wav: 300 samples"
    else:
        broken = tmp_path / "broken.wav"
        broken.write_bytes(b"RIFF....garbage")
        args += [str(broken)]
        expected = "broken.wav: "
    result = _run(args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_cfg_pickled_as_omegaconf_objects(tmp_path):
    # Some fairseq releases pickled the hydra config itself (omegaconf DictConfig and
    # value nodes): unknown classes here, unwrapped from their _content / _val state.
    class DictConfig:
        def __init__(self, content):
            self._content = content

    class AnyNode:
        def __init__(self, value):
            self._val = value

    args = small_args()
    state = random_state(args)
    with _FakeModule("fake_omegaconf", DictConfig=DictConfig, AnyNode=AnyNode) as oc:
        model_cfg = oc.DictConfig({k: oc.AnyNode(v) for k, v in vars(args).items() if k != "arch"})
        model_cfg._content["_name"] = oc.AnyNode("wav2vec")
        path = tmp_path / "omegaconf.pt"
        torch.save({"args": None, "cfg": oc.DictConfig({"model": model_cfg}), "model": state}, path)
    ckpt = load_fairseq_checkpoint(path)
    assert ckpt.settings_form == "cfg" and ckpt.model_settings["conv_feature_layers"] == SMALL_LAYERS
    assert build_front_end("vqwav2vec", path).dim == 32


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_without_gpu_is_a_user_error():
    with pytest.raises(FeatureError, match="no CUDA GPU"):
        build_front_end("logmel", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(tmp_path):
    path = save_fairseq_checkpoint(tmp_path / "c.pt", small_args(skip_connections_feat=True))
    wavs, lengths = padded_batch(LENGTHS)
    for name, ckpt in (("logmel", None), ("vqwav2vec", path)):
        cpu = build_front_end(name, ckpt)(wavs, lengths)
        gpu = build_front_end(name, ckpt, device="cuda")(wavs, lengths)
        assert torch.equal(cpu[1], gpu[1].cpu())
        torch.testing.assert_close(cpu[0], gpu[0].cpu(), atol=1e-3, rtol=1e-4)
