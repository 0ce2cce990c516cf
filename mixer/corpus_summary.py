"""What a corpus adapter yields, seen before anything is mixed (``prep corpus``).

Per split: the utterances per class, the speakers and the total audio duration, read from
each file's header (soundfile; PyAV for media containers), so a corpus of tens of thousands
of files is summarised in seconds. A file whose header cannot be read is counted with the
rejects (the build would reject it too). The rejects are grouped by reason, most frequent
first, with a few of their files.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from mixer.audio import _AV_SUFFIXES, AudioError, _av_stated_frames, audio_info
from mixer.records import Reject, Utterance
from shards.vocab import EMOTIONS, SPLITS

#: Files of each reason listed as examples (the text output names the first).
EXAMPLES_PER_REASON = 3
#: Reasons, and speakers per split, printed by the text output (``--json`` lists every one).
REASONS_PRINTED = 20
SPEAKERS_PRINTED = 40


def header_seconds(path: str | Path) -> float:
    """A file's length in seconds from its header alone; :class:`AudioError` when unreadable."""
    path = Path(path)
    if path.suffix.lower() not in _AV_SUFFIXES:
        frames, rate = audio_info(path)
        return frames / rate
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(path, "no audio stream")
            stream = container.streams.audio[0]
            frames = _av_stated_frames(container, stream)
            rate = stream.rate
    except AudioError:
        raise
    except Exception as exc:  # PyAV raises many error types for broken media
        raise AudioError(path, f"unreadable media ({type(exc).__name__}: {exc})") from None
    if not frames or not rate:
        raise AudioError(path, "the container states no length")
    return frames / rate


def summarize_corpus(utterances: list[Utterance], rejects: list[Reject]) -> dict:
    """``{"splits": {split: {utterances, classes, speakers, seconds}}, "total": {...},
    "rejects": {"count", "reasons": [{reason, count, examples}]}}``; splits in the store's
    order, classes in label order, speakers sorted. Files whose header is unreadable move
    from the utterances to the rejects."""
    rejects = list(rejects)
    kept: list[tuple[Utterance, float]] = []
    for utt in utterances:
        try:
            kept.append((utt, header_seconds(utt.path)))
        except AudioError as err:
            rejects.append(Reject(utt.path, err.reason))
    order = {s: i for i, s in enumerate(SPLITS)}
    splits = {split: _group([(u, s) for u, s in kept if u.split == split])
              for split in sorted({u.split for u, _ in kept}, key=lambda s: (order.get(s, len(order)), s))}
    by_reason: dict[str, list[str]] = defaultdict(list)
    for reject in rejects:
        by_reason[reject.reason].append(reject.file)
    reasons = [{"reason": reason, "count": len(files), "examples": files[:EXAMPLES_PER_REASON]}
               for reason, files in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0]))]
    return {"splits": splits, "total": _group(kept), "rejects": {"count": len(rejects), "reasons": reasons}}


def _group(rows: list[tuple[Utterance, float]]) -> dict:
    classes = Counter(u.label for u, _ in rows)
    labels = [c for c in EMOTIONS if c in classes] + sorted(set(classes) - set(EMOTIONS))
    return {
        "utterances": len(rows),
        "classes": {label: classes[label] for label in labels},
        "speakers": sorted({u.speaker for u, _ in rows}),
        "seconds": round(sum(seconds for _, seconds in rows), 3),
    }


def options_text(options: dict) -> str:
    """``test_actors=1001-1018, labels=voice``: an adapter's options, runs of integers as ranges."""
    return ", ".join(f"{name}={_listed(value) if isinstance(value, list) else value}" for name, value in options.items())


def _listed(values: list) -> str:
    if not values or not all(isinstance(v, int) for v in values):
        return ",".join(map(str, values))
    runs: list[list[int]] = []
    for value in sorted(values):
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ",".join(f"{run[0]}-{run[-1]}" if len(run) > 2 else ",".join(map(str, run)) for run in runs)


def _duration(seconds: float, in_hours: bool) -> str:
    return f"{seconds / 3600:.2f} h" if in_hours else f"{seconds:.1f} s"


def summary_lines(summary: dict) -> list[str]:
    """The summary as text: a table of splits, the speakers per split, the rejects by reason."""
    labels = list(summary["total"]["classes"])
    header = f"{'split':12s}{'utterances':>11s}" + "".join(f"{c:>9s}" for c in labels) + f"{'speakers':>10s}  audio"
    lines = [header]
    in_hours = summary["total"]["seconds"] >= 360  # one unit for every row: hours from a tenth of an hour
    for name, group in [*summary["splits"].items(), ("all", summary["total"])]:
        counts = "".join(f"{group['classes'].get(c, 0):>9d}" for c in labels)
        lines.append(f"{name:12s}{group['utterances']:>11d}{counts}{len(group['speakers']):>10d}  "
                     f"{_duration(group['seconds'], in_hours)}")
    lines.append("")
    for name, group in summary["splits"].items():
        speakers = group["speakers"]
        more = f" ... ({len(speakers)} in all; --json lists them)" if len(speakers) > SPEAKERS_PRINTED else ""
        lines.append(f"speakers {name}: {', '.join(speakers[:SPEAKERS_PRINTED])}{more}")
    rejects = summary["rejects"]
    lines.append("")
    lines.append(f"rejects: {rejects['count']}")
    for entry in rejects["reasons"][:REASONS_PRINTED]:
        lines.append(f"{entry['count']:>8d}  {entry['reason']}  (e.g. {entry['examples'][0]})")
    if len(rejects["reasons"]) > REASONS_PRINTED:
        lines.append(f"          ... {len(rejects['reasons']) - REASONS_PRINTED} more reasons (--json lists them all)")
    return lines
