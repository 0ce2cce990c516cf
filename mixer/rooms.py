"""Simulated shoebox rooms for the reverb kinds (``prep superset --sim-rooms N``).

Each room is drawn from its own generator (seed, "simulated-rooms", room index): dimensions
(length 3-10 m, width 3-8 m, height 2.5-4 m), a target RT60 uniform in ``--sim-rt60``, and a
source and a microphone at least 0.5 m from the walls and 1 m apart. The RIR is computed
once by pyroomacoustics' image-source method (``ShoeBox`` with the wall absorption and
reflection order of Sabine's formula for the target RT60: ``pyroomacoustics.inverse_sabine``)
at 16 kHz and STORED in the store, as float32 WAV files in
``OUT/<corpus>/rirs/simulated-<digest>/`` with ``simulation.json`` (every room's parameters
and the pyroomacoustics version); ``<digest>`` names the settings (rooms, RT60 range, seed).
A later build with the same settings reads the stored files and simulates nothing: the
simulation's parameters do not pin its bits across versions (nor across thread counts: it
runs on one thread here), the stored arrays do. From
there the rooms are RIR files like any other (:mod:`mixer.rir`: T60 by Schroeder
integration, DRR from the direct window, recorded per RIR).

A simulated RIR longer than :data:`mixer.rir.MAX_RIR_SECONDS` (image-source RIRs at RT60 1.6 s
run past 5 s) is cut to it when it is made, not rejected as a user's file of that length
would be: the room was asked for, and its tail past the limit carries a negligible share of
its energy (-103 dB in a 5.18 s room of target RT60 1.6 s). ``simulation.json``
records such a room's ``cut_from_s`` and ``cut_tail_db`` (the cut part's share of the RIR's
energy). Stores made before this rule keep their stored files, which a load still rejects.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from mixer.plan import rng_for
from mixer.rir import MAX_RIR_SECONDS
from shards.errors import InputError
from shards.vocab import SAMPLE_RATE

#: The folder of a store that holds its simulated rooms.
ROOMS_DIR = "rirs"
SIMULATION_FILE = "simulation.json"
#: Room dimensions drawn uniformly (metres), and the margins of the source and microphone.
LENGTH_M, WIDTH_M, HEIGHT_M = (3.0, 10.0), (3.0, 8.0), (2.5, 4.0)
WALL_MARGIN_M, MIN_DISTANCE_M = 0.5, 1.0


#: The generator stream of the superset's rooms, and of the test sets' unseen rooms
#: (``prep testsets --test-sim-rt60``): other dimensions and positions for the same seed.
TRAIN_STREAM, TEST_STREAM = "simulated-rooms", "test-rooms"


def simulation_folder(store: Path, rooms: int, rt60_range: tuple[float, float], seed: int,
                      stream: str = TRAIN_STREAM) -> Path:
    """Where a store keeps the rooms of these settings."""
    settings = {"rooms": rooms, "rt60_s": list(rt60_range), "seed": seed}
    if stream != TRAIN_STREAM:  # the superset's folders keep the names they had
        settings["stream"] = stream
    settings = json.dumps(settings, sort_keys=True)
    return Path(store) / ROOMS_DIR / f"simulated-{hashlib.sha256(settings.encode()).hexdigest()[:12]}"


def _draw_room(rng: np.random.Generator, rt60_range: tuple[float, float]) -> dict:
    dims = [float(rng.uniform(*LENGTH_M)), float(rng.uniform(*WIDTH_M)), float(rng.uniform(*HEIGHT_M))]
    rt60 = float(rng.uniform(*rt60_range))
    while True:  # every draw from the room's generator, so the same seed gives the same room
        source = [float(rng.uniform(WALL_MARGIN_M, d - WALL_MARGIN_M)) for d in dims]
        mic = [float(rng.uniform(WALL_MARGIN_M, d - WALL_MARGIN_M)) for d in dims]
        if float(np.linalg.norm(np.subtract(source, mic))) >= MIN_DISTANCE_M:
            return {"dims_m": dims, "rt60_target_s": rt60, "source_m": source, "mic_m": mic}


def simulate_rir(room: dict) -> np.ndarray:
    """One room's RIR at 16 kHz by the image-source method (float32)."""
    try:
        import pyroomacoustics as pra
    except ImportError:
        raise InputError("--sim-rooms needs pyroomacoustics (pip install pyroomacoustics==0.10.1)") from None
    try:
        absorption, max_order = pra.inverse_sabine(room["rt60_target_s"], room["dims_m"])
    except ValueError as exc:
        raise InputError(f"simulated room {room['dims_m']}: RT60 {room['rt60_target_s']:.2f} s is out of reach "
                         f"({exc}); choose a lower --sim-rt60") from None
    shoebox = pra.ShoeBox(room["dims_m"], fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=max_order)
    shoebox.add_source(room["source_m"])
    shoebox.add_microphone(room["mic_m"])
    threads = pra.constants.get("num_threads")
    pra.constants.set("num_threads", 1)  # its sums' order, so its last bits, follow the thread count
    try:
        shoebox.compute_rir()
    finally:
        pra.constants.set("num_threads", threads)
    room.update(absorption=float(absorption), max_order=int(max_order))
    return np.asarray(shoebox.rir[0][0], dtype=np.float32)


def cut_to_limit(rir: np.ndarray, room: dict) -> np.ndarray:
    """The RIR cut to MAX_RIR_SECONDS; a cut is recorded in ``room`` (length before, and the
    cut tail's share of the energy in dB, None when the tail is all zeros)."""
    limit = int(MAX_RIR_SECONDS * SAMPLE_RATE)
    if len(rir) <= limit:
        return rir
    energy = np.asarray(rir, dtype=np.float64) ** 2
    tail = float(energy[limit:].sum())
    room.update(cut_from_s=len(rir) / SAMPLE_RATE,
                cut_tail_db=10 * float(np.log10(tail / float(energy.sum()))) if tail > 0 else None)
    return rir[:limit]


def simulated_rooms(store: Path, rooms: int, rt60_range: tuple[float, float], seed: int,
                    stream: str = TRAIN_STREAM) -> Path:
    """The folder of the store's simulated rooms for these settings: made once (written to a
    temporary folder and renamed when complete), afterwards read as it is."""
    lo, hi = rt60_range
    if rooms < 0 or not 0 < lo <= hi:
        raise InputError(f"--sim-rooms {rooms} --sim-rt60 {lo:g},{hi:g}: expected rooms >= 0 and 0 < min <= max seconds")
    folder = simulation_folder(store, rooms, rt60_range, seed, stream)
    if (folder / SIMULATION_FILE).is_file():
        return folder
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    records = []
    for i in range(rooms):
        room = _draw_room(rng_for(seed, stream, str(i)), rt60_range)
        rir = cut_to_limit(simulate_rir(room), room)
        name = f"room-{i:03d}.wav"
        if "cut_from_s" in room:
            tail_db = "an all-zero tail" if room["cut_tail_db"] is None else f"{room['cut_tail_db']:.0f} dB of its energy"
            print(f"simulated {name} (target RT60 {room['rt60_target_s']:.2f} s): RIR cut from "
                  f"{room['cut_from_s']:.2f} s to the {MAX_RIR_SECONDS:g} s limit ({tail_db} cut)")
        # scipy writes a plain IEEE-float WAV; libsndfile would add a PEAK chunk with the time of day
        wavfile.write(tmp / name, SAMPLE_RATE, rir)
        records.append({"file": name, **room})
    (tmp / SIMULATION_FILE).write_text(json.dumps(
        {"method": "pyroomacoustics ShoeBox, image-source method, inverse_sabine(rt60, dims)",
         "pyroomacoustics": importlib.metadata.version("pyroomacoustics"), "seed": seed,
         **({"stream": stream} if stream != TRAIN_STREAM else {}),
         "rt60_range_s": [lo, hi], "rooms": records}, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def check_unseen(store: Path, rirs, rt60s: tuple[float, ...] = ()) -> None:
    """Refuse test rooms that training used: an RIR whose content id is among the store's
    superset mixes (its table), or a simulated test RT60 inside the superset's ``--sim-rt60``
    range (its plan). A store without a superset yet has nothing to compare with."""
    from shards.vocab import PLANS_DIR

    seen = superset_rir_ids(store)
    for rir in rirs:
        if rir.rir_id in seen:
            raise InputError(f"{rir.path}: this room impulse response (rir_id {rir.rir_id}) is in the superset of "
                             f"{store}; a test room must be one never used for training")
    plan_path = Path(store) / PLANS_DIR / "superset.json"
    trained = json.loads(plan_path.read_text()).get("sim_rt60") if plan_path.is_file() else None
    if trained:
        lo, hi = (float(x) for x in str(trained).split(","))
        inside = [rt for rt in rt60s if lo <= rt <= hi]
        if inside:
            raise InputError(f"{plan_path}: the superset draws simulated RT60s in [{lo:g}, {hi:g}] s; test RT60 "
                             f"{inside[0]:g} s is among them (expected RT60s the superset does not draw)")


def superset_rir_ids(store: Path) -> set[str]:
    """The content ids of the RIRs the store's superset mixes convolve with (none when the
    store has no table yet, or no reverberant mix)."""
    import pyarrow.parquet as pq

    from shards.vocab import SUPERSET_SUBSET, TABLE

    table_path = Path(store) / TABLE
    if not table_path.is_file() or "rir_id" not in pq.read_schema(table_path).names:
        return set()
    table = pq.read_table(table_path, columns=["subset", "rir_id"])
    return {r for s, r in zip(table["subset"].to_pylist(), table["rir_id"].to_pylist()) if s == SUPERSET_SUBSET and r}



def check_superset_rooms(store: Path, rir_root: Path | None, sim_rooms: int, sim_rt60: str) -> None:
    """Refuse static-baseline rooms other than the superset's: the RIR folder and simulated
    rooms given must be those the store's superset plan records (when it used any)."""
    from shards.vocab import PLANS_DIR

    plan_path = Path(store) / PLANS_DIR / "superset.json"
    plan = json.loads(plan_path.read_text()) if plan_path.is_file() else {}
    if not (plan.get("rir_root") or plan.get("sim_rooms")):
        return

    def where(root) -> str:
        return str(Path(root).resolve()) if root else ""

    trained = (where(plan.get("rir_root")), int(plan.get("sim_rooms", 0)),
               plan.get("sim_rt60") if plan.get("sim_rooms") else None)
    given = (where(rir_root), int(sim_rooms), sim_rt60 if sim_rooms else None)
    if given != trained:
        raise InputError(f"{plan_path}: the superset's rooms are --rir-root {plan.get('rir_root') or '(none)'} "
                         f"--sim-rooms {trained[1]}" + (f" --sim-rt60 {trained[2]}" if trained[1] else "")
                         + "; the static baseline's fixed rooms are some of them: give prep fixed-snr the same")

