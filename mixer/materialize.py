"""``prep materialize STORE --out DIR``: a recipe store written out as the audio store a
``--mixes audio`` build of the same inputs and seed writes: the same shards, table and
manifest (apart from the manifest's ``layout`` field, which an audio store does not have).
Clean shards are copied; every recipe part becomes a shard of FLAC mixes, rendered as every
reader renders them; the noise and RIR shards are left out (an audio store does not need them).
Resumes: a part already written (its rows name the audio fingerprint) is kept."""
from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

from mixer.build import _publish
from shards import store as st
from shards.cores import usable_cores
from shards.errors import InputError
from shards.reader import open_store, release_process_caches
from shards.vocab import LEVELS_DIR, NOISE_SOURCES, RECIPE_LAYOUT, SAMPLE_RATE, SHARDS_DIR, SOURCE_SUBSETS, shard_path, shard_relpath
from shards.writer import ShardWriter, encode_flac, encode_json

#: Keys of a rows-file row that say where a sample lies, not what it is.
_LOCATION_KEYS = ("key", "shard", "flac_offset", "flac_size", "json_offset", "json_size")


def materialize_part(src: str, out: str, name: str) -> int:
    """Write recipe part ``name`` of store ``src`` as an audio shard of store ``out`` (in a
    worker: what it decoded and mapped is released afterwards, see
    shards.reader.release_process_caches)."""
    try:
        return _materialize_part(src, out, name)
    finally:
        release_process_caches()


def _materialize_part(src: str, out: str, name: str) -> int:
    part = st.read_rows(Path(src), name)
    if st.shard_is_complete(Path(out), name, part["audio_fingerprint"]):
        return 0
    store = open_store(src)
    source = store.clips([row["key"] for row in part["rows"]])
    writer = ShardWriter(shard_path(Path(out), name))
    rows = []
    try:
        for i, row in enumerate(part["rows"]):
            fields = {k: v for k, v in row.items() if k not in _LOCATION_KEYS}
            where = writer.add(row["key"], {"flac": encode_flac(source.audio(i), SAMPLE_RATE), "json": encode_json(fields)})
            rows.append({**fields, "key": row["key"], "shard": shard_relpath(name),
                         "flac_offset": where["flac"][0], "flac_size": where["flac"][1],
                         "json_offset": where["json"][0], "json_size": where["json"][1]})
        digest = writer.close()
        task = SimpleNamespace(name=name, subset=part["subset"], split=part["split"], metrics=part["metrics"],
                               fingerprint=lambda: part["audio_fingerprint"])
        _publish(Path(out), task, None, writer, digest, rows, part["rejects"])
    except BaseException:
        writer.abort()
        raise
    return len(rows)


def materialize(src: Path, out: Path, jobs: int = -1) -> dict:
    """Write the audio store of recipe store ``src`` into ``out``; returns its manifest."""
    from joblib import Parallel, delayed

    src, out = Path(src), Path(out)
    store = open_store(src)  # a damaged store, or one whose noise changed, is refused here
    if store.layout != RECIPE_LAYOUT:
        raise InputError(f"{src}: not a recipe store (its mixes are stored as audio already)")
    if out.resolve() == src.resolve():
        raise InputError(f"--out {out}: the recipe store itself; choose another folder")
    noise = {e["name"] for e in store.manifest["shards"] if e["subset"] in SOURCE_SUBSETS}
    recipe_parts = [e["name"] for e in store.manifest["shards"] if e.get("layout") == RECIPE_LAYOUT]
    with st.store_lock(out):
        (out / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
        st.remove_stale_temporaries(out)
        for stage, plan in st.read_plans(src).items():
            audio_plan = {k: v for k, v in plan.items() if k != NOISE_SOURCES}  # an audio store stores no noise
            st.write_plan(out, stage, {**audio_plan, "shards": [n for n in plan["shards"] if n not in noise]})
        for entry in store.manifest["shards"]:
            name = entry["name"]
            if name in noise or entry.get("layout") == RECIPE_LAYOUT:
                continue
            for path in (shard_path(src, name), st.rows_path(src, name)):
                target = out / path.relative_to(src)
                if not (target.is_file() and target.stat().st_size == path.stat().st_size
                        and st.shard_is_complete(out, name, st.read_rows(src, name)["fingerprint"])):
                    shutil.copyfile(path, target)
        n_jobs = usable_cores() if jobs in (0, -1) else jobs
        Parallel(n_jobs=n_jobs, backend="loky")(delayed(materialize_part)(str(src), str(out), n) for n in recipe_parts)
        manifest = st.finalize_store(out, store.manifest.get("versions", {}))
    if (src / LEVELS_DIR).is_dir():
        pass  # level indexes are not copied: 'prep score' on the new store writes them (they record locations)
    return manifest
