"""WebDataset shards: plain POSIX tar files where a sample is a key and named fields
(``<key>.flac``, ``<key>.json``). Members carry fixed metadata (mtime 0, root owner,
mode 0644) so that the same samples always give the same bytes."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf

from shards.atomic import json_clean, temporary_path
from shards.vocab import SAMPLE_RATE


def encode_flac(wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wav, sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


#: Bytes 18-42 of a FLAC stream: STREAMINFO's sample rate, channels, bits per sample, total
#: samples and the MD5 of the unencoded samples. The encoder computes them from the samples alone,
#: while the frames and the vendor string depend on the libFLAC version.
_FLAC_SAMPLES_FIELDS = slice(18, 42)


def member_content(name: str, data: bytes) -> bytes:
    """What a shard member holds, independent of the encoder: a FLAC's sample fields and MD5
    (STREAMINFO), any other member's bytes."""
    if name.endswith(".flac") and data[:4] == b"fLaC" and data[4] & 0x7F == 0:  # STREAMINFO comes first
        return b"flac-samples:" + data[_FLAC_SAMPLES_FIELDS]
    return data


def encode_wav_pcm16(pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """int16 samples as a PCM_16 WAV file (a recipe store's noise: readers memory-map its
    samples in place, see shards.reader.stored_noise)."""
    buf = io.BytesIO()
    sf.write(buf, np.asarray(pcm, dtype=np.int16), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def encode_npy(samples: np.ndarray) -> bytes:
    """float32 samples as an ``.npy`` file (a recipe store's RIR: lossless, read by np.load)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(samples, dtype="<f4"), allow_pickle=False)
    return buf.getvalue()


def encode_json(fields: dict) -> bytes:
    return json.dumps(json_clean(fields), sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


class ShardWriter:
    """Writes one tar under a temporary name; :meth:`commit` renames it into place.
    Records where each member's payload lies so readers can seek to it directly."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.tmp_path = temporary_path(self.path)
        self._file = open(self.tmp_path, "wb")
        self._sha256 = hashlib.sha256()  # fed as bytes are written: no second read of the tar
        self._tar = tarfile.open(fileobj=_HashingWriter(self._file, self._sha256), mode="w", format=tarfile.USTAR_FORMAT)
        self._content = hashlib.sha256()  # the members' content (member_content), in order
        self.num_samples = 0

    @property
    def content_sha256(self) -> str:
        """A digest of the samples written so far, equal for equal samples whatever libFLAC
        encoded them (the tar's sha256 is not: see :func:`member_content`)."""
        return self._content.hexdigest()

    def add(self, key: str, fields: dict[str, bytes]) -> dict[str, tuple[int, int]]:
        """Add one sample; returns {field: (payload offset, payload size)}."""
        where = {}
        for ext in sorted(fields):
            data = fields[ext]
            info = tarfile.TarInfo(f"{key}.{ext}")
            content = member_content(info.name, data)
            self._content.update(f"{info.name}\0{len(content)}\0".encode() + content)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            header_at = self._tar.offset
            self._tar.addfile(info, io.BytesIO(data))  # adds a copy: info.offset_data stays unset
            # a USTAR header is one 512-byte block, the payload follows it directly
            where[ext] = (header_at + tarfile.BLOCKSIZE, len(data))
        self.num_samples += 1
        return where

    def close(self) -> str:
        """Finish the temporary tar on disk; returns its sha256. Nothing is visible yet."""
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._sha256.hexdigest()

    def publish(self) -> None:
        """Rename the finished tar into place: from here on the shard counts as complete."""
        os.replace(self.tmp_path, self.path)

    def abort(self) -> None:
        try:
            self._tar.close()
            self._file.close()
        finally:
            self.tmp_path.unlink(missing_ok=True)


class _HashingWriter:
    """The file object tarfile writes through: every byte also goes into ``digest``."""

    def __init__(self, file, digest):
        self._file = file
        self._digest = digest

    def write(self, data) -> int:
        self._digest.update(data)
        return self._file.write(data)

    def tell(self) -> int:
        return self._file.tell()
