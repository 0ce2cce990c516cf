"""The test conditions of a store, named once: Clean (the clean test utterances), the
seen-noise sets at each exact SNR (``test_snr10``, ``test_snr5``, ``test_snr0``) and Unseen
(``test_unseen``), in the order of the paper's Table 2."""
from __future__ import annotations

import re

from shards.vocab import UNSEEN_SUBSET

TEST_SPLIT = "test"
CLEAN_CONDITION = "clean"
CONDITION_LABELS = {CLEAN_CONDITION: "Clean", "test_snr10": "10 dB", "test_snr5": "5 dB", "test_snr0": "0 dB",
                    UNSEEN_SUBSET: "Unseen"}


def condition_order(name: str) -> tuple:
    """clean, then the seen-noise sets from the highest SNR down, then unseen."""
    if name == CLEAN_CONDITION:
        return (0, 0.0)
    match = re.fullmatch(r"test_snr(m?)(\d+)(?:p(\d+))?", name)
    if match:
        value = float(match.group(2) + ("." + match.group(3) if match.group(3) else ""))
        return (1, -(-value if match.group(1) else value))
    return (2 if name == UNSEEN_SUBSET else 3, 0.0, name)
