"""False alarms on real speech: flags per hour on recordings that hold no rupture.

A flag asks a clinician to review a stretch; a model that raises one every
few minutes on ordinary talk is soon ignored (issue 15). Every recording the
project ships or builds from real, rupture-free speech (the phone call, the
meeting excerpts, children and adults reading) is therefore analysed as the
clinic's flow analyses a session, and its flags are counted as the report
would show them: windows at or above the model's thresholds, with enough
speech, merged into flagged stretches by :func:`models.flagging.flag_windows`.

A recording may have a sidecar (``NAME.ext.json`` or ``NAME.json``, as in the
nightly inbox) giving its language and participants; without one the
analysis settings decide. Features are cached like those of annotated
sessions (:func:`models.dataset.session_features`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import pipeline
from models.artifact import CLASSES, ModelBundle
from pipeline.audio import AUDIO_SUFFIXES
from pipeline.errors import InputError, PipelineError
from pipeline.ids import one_line
from pipeline.types import SessionFeatures

#: metadata of a recording without a sidecar: none
NO_METADATA = Path(pipeline.__file__).resolve().parent / "data" / "no_metadata.json"


def find_recordings(folder: str | Path) -> list[Path]:
    """Every audio file under ``folder`` (any depth; hidden files and folders left out), sorted by path.

    Parameters
    ----------
    folder : str or Path

    Returns
    -------
    list of Path

    Raises
    ------
    InputError
        The folder does not exist or holds no audio file; the message names the folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(root, ("a file, not a folder" if root.exists() else "folder of unannotated recordings not "
                                "found") + "; give a folder of real recordings without ruptures")
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not found:
        raise InputError(root, f"no audio file ({', '.join(s.lstrip('.') for s in AUDIO_SUFFIXES)}) under this "
                               "folder; give a folder of real recordings without ruptures")
    return found


def _regular_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a link in a loop, on Pythons that raise
        return False


def not_recordings(folder: str | Path) -> list[Path]:
    """Entries under ``folder`` named like audio (``.wav``...) that are not regular files: folders, dangling or
    looping links, pipes, devices; and links to folders, whatever their name, which are not searched (hidden ones
    left out, as in :func:`find_recordings`), sorted by path.

    The folder is searched at any depth. "Named like audio" means a suffix
    in :data:`pipeline.audio.AUDIO_SUFFIXES`, in any case. These entries are
    what :func:`find_recordings` passes over, so a caller can name them.

    Parameters
    ----------
    folder : str or Path
        The folder of recordings.

    Returns
    -------
    list of Path
        Sorted; empty when there are none or ``folder`` is not a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    odd = []
    for p in root.rglob("*"):
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        if p.is_symlink() and p.is_dir():  # a linked folder is not searched: named, not passed over (trial)
            odd.append(p)
        elif p.suffix.lower() in AUDIO_SUFFIXES and not _regular_file(p):
            odd.append(p)
    return sorted(odd)


def recording_features(path: Path, settings, *, backends=None) -> tuple[SessionFeatures, float]:
    """Per-window markers of one unannotated recording, by the clinic's analysis (cached).

    Parameters
    ----------
    path : Path
        The recording; its sidecar ``NAME.ext.json`` or ``NAME.json``, when there is one, is the metadata.
    settings : Settings
    backends : Backends, optional
        ASR, speaker and overlap backends (default: the configured ones, loaded once per process).

    Returns
    -------
    (SessionFeatures, duration_s)

    Raises
    ------
    PipelineError
        The sidecar is malformed, is not a regular file (a folder, a dangling or looping link), has a second one
        beside it (``NAME.ext.json`` and ``NAME.json``), refuses consent to analysis (:func:`pipeline.sidecar.refuse_without_consent`,
        as ``alliance analyze`` obeys it) or holds a consent record without research use
        (:func:`models.dataset.research_use_refusal`), or the recording cannot be analysed (the message names the
        file).
    """
    from models import dataset
    from pipeline.ids import id_from_name
    from pipeline.sidecar import Sidecar

    sidecar = checked_sidecar(path)
    # no sidecar: the shipped empty metadata (a temporary file was left in /tmp by a stop at once, Ctrl-C)
    meta_path = sidecar if sidecar is not None else NO_METADATA
    meta = Sidecar.load(meta_path)
    session = dataset.LabelledSession(folder=path.parent, recording=path, metadata=meta_path, annotations=path,
                                      session_id=meta.session_id or id_from_name(path.stem),
                                      client_id=meta.client_id or "unannotated", language=meta.language)
    return dataset.session_features(session, settings, backends=backends)


def checked_sidecar(path: Path) -> Path | None:
    """The sidecar of one unannotated recording, once its consent record allows analysis and research use.

    Parameters
    ----------
    path : Path
        The recording; its sidecar is ``NAME.ext.json`` or ``NAME.json``.

    Returns
    -------
    Path or None
        The sidecar, or None when there is none.

    Raises
    ------
    PipelineError
        As :func:`recording_features` says: a sidecar that is not a regular file, two sidecars, a consent record
        that refuses analysis or does not give research use; also a recording that is a link.
    """
    from models import dataset
    from pipeline.sidecar import refuse_without_consent

    folder_meta = path.parent / "metadata.json"  # a session folder given as recordings: its record is obeyed (trial)
    if folder_meta.is_file():
        refusal = dataset.research_use_refusal(folder_meta)
        if refusal is not None:
            raise InputError(path, f"{refusal} (beside it): its consent record does not allow research use, so it is "
                                   "not used to measure the model")
    if path.is_symlink():  # another client's recording would be read under this name, without its own consent record
        raise InputError(path, "is a link; a folder of recordings holds them as files of its own (the inbox and the "
                               "datasets refuse links too): copy the recording in")
    names = (path.with_name(path.name + ".json"), path.with_suffix(".json"))
    for c in names:  # a sidecar that cannot be read may be a consent record: never analysed as if there were none
        if os.path.lexists(c) and not _regular_file(c):
            raise InputError(path, f"its sidecar {c.name} is not a regular file (a folder, or a link that leads "
                                   "nowhere or in a loop); replace it with the session's metadata or remove it")
    present = [c for c in names if c.is_file()]
    if len(present) == 2:  # as the nightly inbox: which consent record holds is not clear
        raise InputError(path, f"two sidecars, {present[0].name} and {present[1].name}: it is not clear which "
                               "consent record and metadata hold; keep one")
    sidecar = present[0] if present else None
    if sidecar is not None:
        # counting false alarms is research (5 December trial); a refusal of it is named before any other fault
        # of the record (second trial, stop 43)
        refusal = dataset.research_use_refusal(sidecar)
        if refusal is not None:
            raise InputError(path, f"{refusal}: its consent record does not allow research use, so it is not "
                                   "used to measure the model")
        refuse_without_consent(sidecar)  # a consent record that says no is obeyed by every way in
    return sidecar


def check_choice_apart(reported: Sequence[str | Path], choosing: Sequence[str | Path]) -> None:
    """Refuse recordings that would choose the model while the model trains on them or its card reports them.

    A choice folder that is, holds or lies inside one of ``reported``, a choice recording with the same content
    (sha256 of its bytes) as a reported one, and a choice recording given twice (the same content in two places)
    are refused: the card's false-alarm figure must not be the one that chose, and no recording may weigh double.

    Parameters
    ----------
    reported : sequence of path
        Folders the model trains on or whose false alarms its card reports (``--data``, ``--holdout``,
        ``--unannotated``).
    choosing : sequence of path
        Folders whose false alarms take part in the model choice (``--choose-on``).

    Raises
    ------
    InputError
        Naming the folder or the recording and what it repeats, or a recording that cannot be read.
    """
    from pipeline.audio import recording_sha256

    for c in map(Path, choosing):
        for r in map(Path, reported):
            cr, rr = c.resolve(), r.resolve()
            if cr == rr or rr in cr.parents or cr in rr.parents:
                raise InputError(c, f"a folder of recordings that chooses the model is, holds or lies inside {r}, "
                                    "which the model trains on or whose false alarms the card reports; give the "
                                    "choice other recordings")

    def digest(p: Path) -> str:
        try:
            return recording_sha256(p)
        except OSError as exc:
            raise InputError(p, f"cannot be read ({exc.strerror or exc})") from None

    seen = {digest(p): p for d in reported for p in _audio_files(d)}
    chosen: dict[str, Path] = {}
    for d in choosing:
        for p in find_recordings(d):
            key = digest(p)
            if key in seen:
                raise InputError(p, f"the same recording as {seen[key]} (identical content), which the model trains "
                                    "on or whose false alarms the card reports; give the choice other recordings")
            if key in chosen:
                raise InputError(p, f"the same recording as {chosen[key]} (identical content): a recording given "
                                    "twice among those that choose the model would count twice; keep one")
            chosen[key] = p


def _audio_files(folder: str | Path) -> list[Path]:
    """Audio files under ``folder`` as :func:`find_recordings` finds them, none for a folder without any."""
    try:
        return find_recordings(folder)
    except InputError:
        return []


def usable_recordings(folders: Sequence[str | Path], settings) -> tuple[list[Path], list[str]]:
    """Screen unannotated recordings before any analysis: their sidecars allow it and their audio can be opened.

    Parameters
    ----------
    folders : sequence of path
    settings : Settings

    Returns
    -------
    (list of Path, list of str)
        The recordings that passed, and one line per recording set aside (its name and why).
    """
    from pipeline.audio import probe
    from pipeline.errors import PipelineError
    from pipeline.ids import one_line

    ok, why = [], []
    for d in folders:
        for p in find_recordings(d):
            try:
                checked_sidecar(p)
                probe(p, settings=settings.audio)
            except PipelineError as exc:
                why.append(one_line(f"{p.name}: {_without_name(str(exc), p, p.name)}"))
                continue
            ok.append(p)
    return ok, why


def flags_per_hour(n_flags: int, minutes: float) -> float:
    """Flags per hour of recording; NaN for a recording of no length.

    Parameters
    ----------
    n_flags : int >= 0
    minutes : float >= 0
        Length of the recording in minutes.

    Returns
    -------
    float
        Flags per hour (1/h).
    """
    return n_flags / (minutes / 60.0) if minutes > 0 else math.nan


def false_alarms(bundle: ModelBundle, folders: Sequence[str | Path], settings, *, threshold: float | None = None,
                 progress=print, backends=None, other_dirs: Sequence[str | Path] = ()) -> dict:
    """Analyse every recording under ``folders`` and count the model's flags: all of them are false alarms.

    Parameters
    ----------
    bundle : ModelBundle
        The model, with its per-type thresholds.
    folders : sequence of path
        Folders of real recordings without ruptures (:func:`find_recordings`).
    settings : Settings
        Analysis settings; ``model.min_window_speech_s`` as in the clinic's flow.
    threshold : float in (0, 1), optional
        Overrides the card's thresholds (``ALLIANCE_MODEL__FLAG_THRESHOLD``), as the flow does.
    progress : callable
        Called with one line per recording (file name and count; never what was said).
    backends : Backends, optional
        For tests; default the configured analysis models.
    other_dirs : sequence of path
        The run's other folders (its datasets). A recording with the same bytes as any other audio file under
        ``folders`` or ``other_dirs`` (:func:`models.dataset.copies_elsewhere`) is set aside, every copy of it: a
        recording is measured once, and not at all where a copy of it may not be used (three trials, stop 43).

    Returns
    -------
    dict
        ``thresholds`` (per type, as applied), ``confirm`` (per type, the confirmation level of a card that has
        one and no threshold override), ``files``: ``[{"file" (path inside its folder), "folder", "minutes",
        "flags", "flags_per_hour", "by_type": {type: flags}}]`` and ``overall``: ``{"files", "minutes", "flags",
        "flags_per_hour", "by_type"}``. Minutes are rounded to 0.01, rates to 0.01 per hour. ``skipped``:
        ``[{"file", "folder", "why"}]``, the recordings set aside and not counted: those that cannot be analysed
        (the error's one line) and those with no window of enough speech ("no speech found", or "too little
        speech to judge" where some was found).

    Raises
    ------
    InputError
        A folder is missing or holds no audio (the message names it).
    """
    from models.flagging import flag_windows
    from pipeline.audio import shortfall_warning

    def say(line: str) -> None:  # file names and messages on one line: no forged line, no terminal escape
        progress(one_line(line))

    files, skipped, total_min, total = [], [], 0.0, {name: 0 for name in CLASSES[1:]}
    from models.dataset import copies_elsewhere, run_recordings, shown_path

    elsewhere = run_recordings([*folders, *other_dirs])
    digests: dict = {}
    for folder in folders:
        root = Path(folder)
        for path in not_recordings(root):  # named, never silently left out
            rel = path.relative_to(root).as_posix()
            why = ("a link to a folder, not searched: copy the recordings in" if path.is_symlink() and path.is_dir()
                   else "not a regular file (a folder, a link that leads nowhere or in a loop, a pipe or a device)")
            skipped.append({"file": rel, "folder": str(folder), "why": why})
            say(f"{rel}: set aside: {why}")
        for path in find_recordings(root):
            rel = path.relative_to(root).as_posix()
            copies = [] if path.is_symlink() else copies_elsewhere(path, elsewhere, digests)
            if copies:  # under two names its flags would count twice; and a copy may be a refused one (trials)
                shown = ", ".join(shown_path(p, [*folders, *other_dirs]) for p in copies[:3])
                why = (f"the same recording as {shown}{' ...' if len(copies) > 3 else ''} (identical content); a "
                       "recording is measured once, and not at all where one of its copies may not be used")
                skipped.append({"file": rel, "folder": str(folder), "why": why})
                say(f"{rel}: set aside: {why}")
                continue
            try:
                feats, duration_s = recording_features(path, settings, backends=backends)
            except PipelineError as exc:  # one bad file never throws away the others
                why = _without_name(str(exc), path, rel)
                skipped.append({"file": rel, "folder": str(folder), "why": why})
                say(f"{rel}: set aside: {why}")
                continue
            # a file cut short counts on what was decoded, and says so
            warning = shortfall_warning(path, duration_s, settings=getattr(settings, "audio", None))
            if not any(f.speech_s >= settings.model.min_window_speech_s for f in feats.frames):
                # silence is no evidence of calm talk: counted, it would lower the rate
                window_s = getattr(getattr(settings, "features", None), "window_s", None)
                if window_s is not None and duration_s < window_s:
                    why = f"{duration_s:.1f} s long, shorter than one analysis window ({window_s:g} s)"
                elif any(f.speech_s > 0 for f in feats.frames):  # as `alliance analyze` says it
                    why = (f"too little speech to judge (no window holds {settings.model.min_window_speech_s:g} s "
                           "of speech)")
                else:
                    why = "no speech found"
                why += f"; {warning}" if warning else ""
                skipped.append({"file": rel, "folder": str(folder), "why": why})
                say(f"{rel}: set aside: {why}")
                continue
            flags = flag_windows(feats, bundle, threshold=threshold, min_speech_s=settings.model.min_window_speech_s)
            minutes = duration_s / 60.0
            by_type = {name: sum(f.marker_type == name for f in flags) for name in CLASSES[1:]}
            row = {"file": rel, "folder": str(folder), "minutes": round(minutes, 2), "flags": len(flags),
                   "flags_per_hour": _round(flags_per_hour(len(flags), minutes)), "by_type": by_type}
            if warning:
                row["warning"] = warning
            files.append(row)
            total_min += minutes
            for name, n in by_type.items():
                total[name] += n
            say(f"{rel}: {len(flags)} flag{'' if len(flags) == 1 else 's'} in {minutes:.1f} min"
                + (f"; {warning}" if warning else ""))
    n = sum(total.values())
    applied = {CLASSES[k]: threshold if threshold is not None else bundle.class_threshold(k) for k in (1, 2)}
    confirm = {} if threshold is not None else {CLASSES[k]: bundle.class_confirm(k) for k in (1, 2)
                                                if bundle.class_confirm(k) is not None}
    return {"thresholds": applied, **({"confirm": confirm} if confirm else {}), "files": files, "skipped": skipped,
            "overall": {"files": len(files), "minutes": round(total_min, 2), "flags": n,
                        "flags_per_hour": _round(flags_per_hour(n, total_min)), "by_type": total}}


def format_false_alarms(result: dict) -> str:
    """A plain-text table of :func:`false_alarms` output: one row per recording, then the total; file names and
    reasons with control characters escaped (:func:`pipeline.ids.one_line`).

    Columns: file, minutes, flags and flags per hour (a dash when there is
    no rate). After the table come one line per recording with a warning
    and one per recording set aside, with its reason.

    Parameters
    ----------
    result : dict
        As returned by :func:`false_alarms`: ``files`` (rows with ``file``,
        ``minutes``, ``flags``, ``flags_per_hour`` and an optional
        ``warning``), ``overall`` and an optional ``skipped`` list.

    Returns
    -------
    str
        Lines joined by newlines, without a final newline.

    Raises
    ------
    KeyError
        ``result`` lacks a key named above.
    """
    width = max([len(one_line(f["file"])) for f in result["files"]] + [24])
    lines = [f"{'file':<{width}} {'minutes':>8} {'flags':>6} {'flags per hour':>15}"]
    rows = [(one_line(f["file"]), f) for f in result["files"]]
    n_files = result['overall']['files']
    rows.append((f"overall ({n_files} file{'' if n_files == 1 else 's'})", result["overall"]))
    for name, r in rows:
        rate = "—" if r["flags_per_hour"] is None or math.isnan(r["flags_per_hour"]) else f"{r['flags_per_hour']:.1f}"
        lines.append(f"{name:<{width}} {r['minutes']:>8.1f} {r['flags']:>6} {rate:>15}")
    lines += [one_line(f"{f['file']}: {f['warning']}") for f in result["files"] if f.get("warning")]
    for s in result.get("skipped", []):
        lines.append(one_line(f"{s['file']}: set aside ({s['why']})"))
    return "\n".join(lines)


def _without_name(message: str, path: Path, rel: str) -> str:
    """An error's one line without the file name it starts with (the row already names the file)."""
    for prefix in (f"{path}: ", f"{rel}: ", f"{path.name}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


def _round(v: float) -> float:
    return round(v, 2) if math.isfinite(v) else v
