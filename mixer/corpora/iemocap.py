"""IEMOCAP: the Interactive Emotional Dyadic Motion Capture database (speech of the turns).

Expected layout (``root`` is the release's folder, ``IEMOCAP_full_release``)::

    root/
      Session1/
        dialog/EmoEvaluation/Ses01F_impro01.txt ...      one label file per dialog
        sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav ...
      ...
      Session5/

Only the label files directly in ``EmoEvaluation/`` are read (its ``Attribute/``,
``Categorical/`` and ``Self-evaluation/`` folders hold each evaluator's own files). A label
file is read as released: a header line (``% [START_TIME - END_TIME] TURN_NAME EMOTION [V,
A, D]``), then per turn one line ``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000,
2.5000, 2.5000]`` (start and end in seconds, turn id, the evaluators' consensus label,
valence/arousal/dominance) followed by one line per evaluator (``C-E2:``, ``A-F1:`` ...) and
a blank line. Any other line is a reject naming its line number.

A turn id ``Ses01F_impro01_F000`` is the session (01), the actor who wore the motion-capture
markers in that dialog (F), the dialog (``impro01``; scripted ones ``script01_1``) and the
turn: its first letter is the gender of whoever speaks it (F000: the session's woman), the
speaker. So the speaker is ``Ses01_F`` (five sessions of one woman and one man: ten speakers)
and the dialog's audio folder is the turn id without its last ``_`` part.

Kept: angry (``ang``), happy, neutral (``neu``) and sad (``sad``). ``happy="hap+exc"`` (the
default, the usual protocol, e.g. SUPERB's emotion task) merges excited (``exc``) into happy;
``happy="hap"`` keeps only ``hap`` and every excited turn is a reject. Every other label
(``fru``, ``sur``, ``fea``, ``dis``, ``oth``, ``xxx`` for no majority) is a reject with its
reason, as is a turn of the dialogs left out by ``dialogs`` (``impro`` or ``script``; default
``all``), a turn id that does not follow the pattern or names another session, a second turn
with the same id, and a kept turn whose wav is missing. Sessions 1-5 hold 1,085 / 1,023 /
1,151 / 1,031 / 1,241 turns of the four classes with ``hap+exc`` (5,531 in all).

IEMOCAP has no official split; the sessions are left out one at a time (speaker-independent:
a session's two actors appear in no other session): ``test_session`` (default 5) tests,
``validation_session`` (default 4) validates, the three others train. For a study over
five folds, ``bench/study.py --corpus iemocap --folds 5 --validation-speakers 1`` rotates
the sessions (:func:`fold_group`).

Citation: C. Busso, M. Bulut, C.-C. Lee, A. Kazemzadeh, E. Mower, S. Kim, J. N. Chang, S. Lee
and S. S. Narayanan, "IEMOCAP: Interactive emotional dyadic motion capture database",
Language Resources and Evaluation 42(4), 2008. Licensed by USC SAIL on request.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from shards.errors import InputError

from ..records import Reject, Utterance, safe_id
from ._common import SplitOption, held_out_ids, line_place, read_text, require_dir

SESSIONS = range(1, 6)
SESSION_DIR = "Session{}"
LABEL_DIR = "dialog/EmoEvaluation"
WAV_DIR = "sentences/wav"
#: The consensus label -> the class kept (excited only with happy="hap+exc").
EMOTION_LABELS = {"ang": "angry", "hap": "happy", "neu": "neutral", "sad": "sad"}
EXCITED = "exc"
#: Every other label of the release, named in its reject.
UNUSED_LABELS = {"exc": "excited", "fru": "frustration", "sur": "surprise", "fea": "fear", "dis": "disgust",
                 "oth": "other", "xxx": "no majority among the evaluators"}
HAPPY_WITH_EXCITED, HAPPY_ONLY = "hap+exc", "hap"
HAPPY_CHOICES = (HAPPY_WITH_EXCITED, HAPPY_ONLY)
ALL_DIALOGS = "all"
DIALOG_KINDS = ("impro", "script")
DIALOG_CHOICES = (ALL_DIALOGS, *DIALOG_KINDS)
GENDERS = {"F": "female", "M": "male"}
DEFAULT_TEST_SESSION = 5
DEFAULT_VALIDATION_SESSION = 4
#: What ``prep`` offers: --happy hap+exc --dialogs all --test-session 5 --validation-session 4
SPLIT_OPTIONS = (
    SplitOption("happy", "the labels taken as happy (hap+exc merges excited into happy)", choices=HAPPY_CHOICES),
    SplitOption("dialogs", "the dialogs used (impro: improvised, script: scripted)", choices=DIALOG_CHOICES),
    SplitOption("test_session", "the session (1-5) held out for test", int, single=True),
    SplitOption("validation_session", "the session (1-5) held out for validation", int, single=True),
)
LAYOUT = "Session1/ ... Session5/ holding dialog/EmoEvaluation/*.txt and sentences/wav/<dialog>/<turn>.wav"

TURN_LINE = re.compile(
    r"^\[(?P<start>\d+(?:\.\d+)?) - (?P<end>\d+(?:\.\d+)?)\]\t(?P<turn>\S+)\t(?P<label>\S+)\t\[[^\]]*\]\s*$"
)
EVALUATOR_LINE = re.compile(r"^[A-Z]+-[A-Za-z]+\d*:")  # C-E2:, A-F1:, C-M:
TURN_ID = re.compile(r"^Ses(?P<session>\d\d)(?P<wearer>[FM])_(?P<dialog>.+)_(?P<gender>[FM])\d+$")


def fold_group(speaker: str) -> str:
    """The fold a speaker belongs to in a study: the session (``Ses01_F`` -> ``Ses01``), so
    that a fold tests one session and both its speakers."""
    return speaker.split("_")[0]


def _turn_reject_reason(match: re.Match, session: int, happy: str, dialogs: str) -> str | None:
    """Why a well-formed turn line of a Session<session> label file is left out, or None."""
    turn_id = TURN_ID.match(match["turn"])
    if turn_id is None:
        return f"turn id '{match['turn']}' does not follow IEMOCAP's pattern (e.g. Ses01F_impro01_F000)"
    if int(turn_id["session"]) != session:
        return f"turn id '{match['turn']}' names session {int(turn_id['session'])} in Session{session}'s labels"
    if dialogs != ALL_DIALOGS and not turn_id["dialog"].startswith(dialogs):
        kind = next((k for k in DIALOG_KINDS if turn_id["dialog"].startswith(k)), "unknown")
        return f"{kind} dialog, left out by dialogs={dialogs}"
    label = match["label"]
    if label == EXCITED and happy == HAPPY_ONLY:
        return f"label '{label}' (excited): happy={HAPPY_ONLY} keeps only 'hap' as happy ({HAPPY_WITH_EXCITED} merges it)"
    if label not in EMOTION_LABELS and label != EXCITED:
        name = f" ({UNUSED_LABELS[label]})" if label in UNUSED_LABELS else ""
        return f"label '{label}'{name} not among the 4 classes used"
    return None


def _line_reason(line: str) -> str | None:
    """Why a line that is neither a turn line nor allowed around them is not understood, or None."""
    if not line.strip() or line.startswith("%") or EVALUATOR_LINE.match(line):
        return None
    return ("line not understood: expected a turn line '[start - end]<TAB>turn id<TAB>label<TAB>[V, A, D]', "
            "an evaluator line such as 'C-E2: ...' or a blank line")


class _WavIndex:
    """The wav files of each dialog folder, listed once per folder."""

    def __init__(self, wav_root: Path):
        self.wav_root = wav_root
        self.listed: dict[str, frozenset[str]] = {}

    def path(self, dialog: str, turn: str) -> Path | None:
        if dialog not in self.listed:
            try:
                self.listed[dialog] = frozenset(os.listdir(self.wav_root / dialog))
            except OSError:
                self.listed[dialog] = frozenset()
        name = f"{turn}.wav"
        return self.wav_root / dialog / name if name in self.listed[dialog] else None


def prepare(
    root: str | Path,
    *,
    happy: str = HAPPY_WITH_EXCITED,
    dialogs: str = ALL_DIALOGS,
    test_session: int = DEFAULT_TEST_SESSION,
    validation_session: int = DEFAULT_VALIDATION_SESSION,
    corpus: str = "iemocap",
) -> tuple[list[Utterance], list[Reject]]:
    """The turns of the four classes, split by session; a reject for every other turn."""
    root = require_dir(root, f"IEMOCAP's release folder holding {LAYOUT}")
    if happy not in HAPPY_CHOICES:
        raise InputError(f"{root}: happy={happy!r}: expected one of {', '.join(HAPPY_CHOICES)}")
    if dialogs not in DIALOG_CHOICES:
        raise InputError(f"{root}: dialogs={dialogs!r}: expected one of {', '.join(DIALOG_CHOICES)}")
    held_out_ids((test_session,), (validation_session,), SESSIONS, "session", "IEMOCAP", root)  # InputError if bad
    test, validation = test_session, validation_session
    label_files = {
        session: sorted(p for p in (root / SESSION_DIR.format(session) / LABEL_DIR).glob("*.txt")
                        if not p.name.startswith("."))
        for session in SESSIONS
    }
    if not any(label_files.values()):
        raise InputError(f"{root}: no Session<N>/{LABEL_DIR}/*.txt label file found (expected {LAYOUT})")

    utterances: list[Utterance] = []
    rejects: list[Reject] = []
    seen: dict[str, str] = {}
    for session, files in label_files.items():
        split = "test" if session == test else "validation" if session == validation else "train"
        wavs = _WavIndex(root / SESSION_DIR.format(session) / WAV_DIR)
        for label_file in files:
            for number, line in enumerate(read_text(label_file).splitlines(), start=1):
                place = line_place(label_file, number)
                match = TURN_LINE.match(line)
                if match is None:
                    reason = _line_reason(line)
                    if reason is not None:
                        rejects.append(Reject(place, reason))
                    continue
                reason = _turn_reject_reason(match, session, happy, dialogs)
                if reason is not None:
                    rejects.append(Reject(place, reason))
                    continue
                turn = match["turn"]
                if turn in seen:
                    rejects.append(Reject(place, f"duplicate turn id '{turn}' (also {seen[turn]})"))
                    continue
                seen[turn] = place
                dialog = turn.rsplit("_", 1)[0]
                wav = wavs.path(dialog, turn)
                if wav is None:
                    expected = Path(SESSION_DIR.format(session), WAV_DIR, dialog, f"{turn}.wav")
                    rejects.append(Reject(str(root / expected), "audio not found (the label file lists the turn)"))
                    continue
                gender = TURN_ID.match(turn)["gender"]
                label = EMOTION_LABELS[HAPPY_ONLY if match["label"] == EXCITED else match["label"]]
                utterances.append(Utterance(
                    utt_id=safe_id(turn),
                    path=str(wav),
                    label=label,
                    split=split,
                    speaker=f"Ses{session:02d}_{gender}",
                    corpus=corpus,
                    gender=GENDERS[gender],
                ))
    utterances.sort(key=lambda u: u.utt_id)
    return utterances, rejects
