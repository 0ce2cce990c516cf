"""The arithmetic that turns a mix's recipe into its samples: one home for the build and
every reader. A recipe is (clean utterance, noise, ``noise_offset``, ``noise_gain``,
``gain``); its samples are ``quantize_pcm16((clean + noise_gain * noise) * gain)`` with the
noise cut at ``noise_offset`` (or repeated when shorter than the utterance). The build
(``mixer.mixing.mix_at_snr``) renders a mix with :func:`render_mix`; a recipe store's reader
renders it with :func:`mix_recipe` from the stored clean FLAC and the stored 16-bit noise,
so the mix that was scored is the mix every reader gets, bit for bit. Pure functions on
numpy arrays: no files, no state.
"""
from __future__ import annotations

import numpy as np

INT16_SCALE = 32768.0
#: Largest float that survives 16-bit PCM without clipping.
FULL_SCALE = 32767.0 / 32768.0


class MixError(Exception):
    """This mix cannot be made (e.g. the noise segment is silent or empty)."""


def quantize_pcm16(wav: np.ndarray) -> np.ndarray:
    """Round to the 16-bit grid (what a PCM_16 FLAC/WAV stores), as float32."""
    ints = np.clip(np.round(np.asarray(wav, dtype=np.float64) * INT16_SCALE), -32768, 32767)
    return (ints / INT16_SCALE).astype(np.float32)


def pcm16_to_float(pcm: np.ndarray) -> np.ndarray:
    """16-bit integer samples as the float32 values a PCM_16 file decodes to (x / 32768)."""
    return (np.asarray(pcm, dtype=np.float32) / np.float32(INT16_SCALE)).astype(np.float32, copy=False)


def float_to_pcm16(wav: np.ndarray) -> np.ndarray:
    """float32 samples already on the 16-bit grid (see :func:`quantize_pcm16`) as int16."""
    return np.clip(np.round(np.asarray(wav, dtype=np.float64) * INT16_SCALE), -32768, 32767).astype(np.int16)


def noise_stretch(noise: np.ndarray, num_samples: int, offset: int = 0) -> np.ndarray:
    """The noise stretch laid under an utterance of ``num_samples``: cut at ``offset`` when
    long enough, otherwise the whole noise repeated end to end (the authors' code repeats
    short noise). Keeps the dtype: cutting a long int16 noise first and converting only the
    stretch keeps a read cheap."""
    noise = np.asarray(noise)
    if noise.size == 0:
        raise MixError("noise segment is empty")
    if noise.size - offset >= num_samples:
        return noise[offset : offset + num_samples]
    reps = -(-num_samples // noise.size)
    return np.tile(noise, reps)[:num_samples]


def fit_noise(noise: np.ndarray, num_samples: int, offset: int = 0) -> np.ndarray:
    """:func:`noise_stretch` of a float noise, as float32."""
    return noise_stretch(np.asarray(noise, dtype=np.float32), num_samples, offset)


def _render(s: np.ndarray, n: np.ndarray, noise_gain: float, gain: float) -> np.ndarray:
    """``quantize_pcm16((s + noise_gain * n) * gain)`` computed in place in ``n`` (float64, owned):
    the same operations in the same order as :func:`quantize_pcm16` of the mix, so the same
    bits, with fewer passes over memory (a read renders every mix of an epoch)."""
    if s.shape != n.shape:
        raise ValueError(f"speech and noise differ in length: {s.shape} vs {n.shape}")
    n *= noise_gain
    n += s
    return _scaled_to_grid(n, gain)


def _scaled_to_grid(n: np.ndarray, gain: float) -> np.ndarray:
    """``quantize_pcm16(n * gain)`` computed in place in ``n`` (float64, owned)."""
    if gain != 1.0:  # x * 1.0 is x exactly
        n *= gain
    n *= INT16_SCALE
    np.rint(n, out=n)  # what np.round does with no decimals: half to even
    np.clip(n, -32768, 32767, out=n)
    out = n.astype(np.float32)  # integers up to 2**15: exact in float32
    out *= np.float32(1.0 / INT16_SCALE)  # a power of two: exact, as the float64 division is
    return out


def render_mix(clean: np.ndarray, noise: np.ndarray, noise_gain: float, gain: float) -> np.ndarray:
    """``quantize_pcm16((clean + noise_gain * noise) * gain)`` in float64: the stored mix of a
    clean signal and a noise stretch of its length."""
    return _render(np.asarray(clean, dtype=np.float64), np.array(noise, dtype=np.float64), noise_gain, gain)


def _as_float64(wav: np.ndarray) -> np.ndarray:
    """Samples as float64; 16-bit integers as a PCM_16 file decodes them (x / 32768, exact)."""
    wav = np.asarray(wav)
    if wav.dtype == np.int16:
        out = wav.astype(np.float64)
        out *= 1.0 / INT16_SCALE
        return out
    return wav.astype(np.float64)


def mix_recipe(clean: np.ndarray, noise_pcm16: np.ndarray, noise_offset: int, noise_gain: float,
               gain: float) -> np.ndarray:
    """A recipe's samples: ``clean`` (float32 on the 16-bit grid as decoded from the store, or
    its int16 samples) mixed with the stored 16-bit noise cut at ``noise_offset``:
    :func:`render_mix` of the clean signal and the noise stretch as a PCM_16 file decodes it."""
    n = _as_float64(noise_stretch(noise_pcm16, int(np.asarray(clean).size), int(noise_offset)))
    return _render(_as_float64(clean), n, float(noise_gain), float(gain))


# ------------------------------------------------------------------------------------------
# the other distortion kinds (shards.distortions): babble, reverberation, far field
# ------------------------------------------------------------------------------------------
def stretch_offset(offset_fraction: float, source_samples: int, num_samples: int) -> int:
    """Where a stretch of ``num_samples`` starts in a source of ``source_samples``: its seeded
    share of the free room, or 0 when the source is no longer (then repeated end to end)."""
    room = source_samples - num_samples
    return min(int(offset_fraction * (room + 1)), room) if room > 0 else 0


def babble_signal(talkers, offsets, talker_gains, num_samples: int) -> np.ndarray:
    """The babble under an utterance of ``num_samples`` (float64): each talker's 16-bit
    samples (int16, or float32 on the 16-bit grid) cut at its offset or repeated to the
    length (:func:`noise_stretch`), times its gain, summed in the order given."""
    out = np.zeros(num_samples, dtype=np.float64)
    for pcm, offset, gain in zip(talkers, offsets, talker_gains):
        stretch = _as_float64(noise_stretch(pcm, num_samples, int(offset)))
        stretch *= float(gain)
        out += stretch
    return out


def rir_peak(rir: np.ndarray) -> int:
    """The alignment rule: the index of the RIR's largest absolute sample (the first such)."""
    return int(np.argmax(np.abs(np.asarray(rir, dtype=np.float64))))


def reverberate(speech: np.ndarray, rir: np.ndarray, shift: int, num_samples: int) -> np.ndarray:
    """``speech`` convolved with ``rir`` (linear convolution, by real FFTs of a power-of-two
    length), shifted left by ``shift`` samples and cut to ``num_samples`` (float64)."""
    s = _as_float64(speech)
    h = np.asarray(rir, dtype=np.float64)
    size = 1 << (s.size + h.size - 2).bit_length()  # >= the full convolution's length
    full = np.fft.irfft(np.fft.rfft(s, size) * np.fft.rfft(h, size), size)
    out = np.zeros(num_samples, dtype=np.float64)
    kept = full[shift:shift + num_samples]
    out[:kept.size] = kept
    return out


def reverberant_speech(clean: np.ndarray, rir: np.ndarray, rir_shift: int, reverb_gain: float) -> np.ndarray:
    """The reverberant utterance (float64): :func:`reverberate` of the clean signal, aligned
    by ``rir_shift``, cut to its length and times ``reverb_gain`` (the build sets it so the
    mean power is the clean utterance's)."""
    wet = reverberate(clean, rir, int(rir_shift), int(np.asarray(clean).size))
    wet *= float(reverb_gain)
    return wet


def render_signal(wav: np.ndarray, gain: float) -> np.ndarray:
    """``quantize_pcm16(wav * gain)``: a signal with nothing added, as stored."""
    return _scaled_to_grid(np.array(wav, dtype=np.float64), gain)


def mix_babble(clean, talkers, offsets, talker_gains, noise_gain: float, gain: float) -> np.ndarray:
    """A babble recipe's samples: the clean signal plus ``noise_gain`` times the babble of
    :func:`babble_signal`, then ``gain``, on the 16-bit grid (as :func:`render_mix`)."""
    n = babble_signal(talkers, offsets, talker_gains, int(np.asarray(clean).size))
    return _render(_as_float64(clean), n, float(noise_gain), float(gain))


def mix_reverb(clean, rir, rir_shift: int, reverb_gain: float, gain: float) -> np.ndarray:
    """A reverb recipe's samples: :func:`reverberant_speech` times ``gain`` on the 16-bit grid."""
    return _scaled_to_grid(reverberant_speech(clean, rir, rir_shift, reverb_gain), float(gain))


def mix_reverb_noise(clean, rir, rir_shift: int, reverb_gain: float, noise_pcm16, noise_offset: int,
                     noise_gain: float, gain: float) -> np.ndarray:
    """A far-field recipe's samples: the reverberant utterance plus the stored noise cut at
    ``noise_offset`` times ``noise_gain``, then ``gain``, on the 16-bit grid."""
    wet = reverberant_speech(clean, rir, rir_shift, reverb_gain)
    n = _as_float64(noise_stretch(noise_pcm16, wet.size, int(noise_offset)))
    return _render(wet, n, float(noise_gain), float(gain))
