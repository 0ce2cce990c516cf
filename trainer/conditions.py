"""The test conditions of a store, named once: Clean (the clean test utterances), the
seen-noise sets at each exact SNR (``test_snr10``, ``test_snr5``, ``test_snr0``) and Unseen
(``test_unseen``), in the order of the paper's Table 2; then the test sets of the other
distortion kinds (``prep testsets --kinds``: babble at each SNR, reverberation in unseen
rooms, far field), named and ordered by the distortion registry (shards.distortions), so a
kind's conditions need nothing here."""
from __future__ import annotations

import re

from shards.distortions import test_condition_label, test_condition_rank
from shards.vocab import UNSEEN_SUBSET

TEST_SPLIT = "test"
CLEAN_CONDITION = "clean"
CONDITION_LABELS = {CLEAN_CONDITION: "Clean", "test_snr10": "10 dB", "test_snr5": "5 dB", "test_snr0": "0 dB",
                    UNSEEN_SUBSET: "Unseen"}


def condition_label(name: str) -> str:
    """How Table 2 and the plots name a condition: the paper's names, a kind's from the
    registry ("Babble 5 dB", "Reverberation, unseen rooms", "Far field 5 dB"), else its subset."""
    return CONDITION_LABELS.get(name) or test_condition_label(name) or name


def condition_order(name: str) -> tuple:
    """clean, then the seen-noise sets from the highest SNR down, then unseen, then the other
    kinds' conditions in registry order."""
    if name == CLEAN_CONDITION:
        return (0, 0.0)
    match = re.fullmatch(r"test_snr(m?)(\d+)(?:p(\d+))?", name)
    if match:
        value = float(match.group(2) + ("." + match.group(3) if match.group(3) else ""))
        return (1, -(-value if match.group(1) else value))
    if name == UNSEEN_SUBSET:
        return (2, 0.0, name)
    rank = test_condition_rank(name)
    if rank is not None:
        return (3, rank, name)
    return (4, 0.0, name)
