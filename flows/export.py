"""Export of the therapists' verdicts as annotated sessions for retraining (``alliance export-reviews``).

Moved out of the review web app: exporting is a disclosure of client data for research, not part of serving
reviews.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from flows.inbox import find_recording, session_sidecar
from flows.store import Store
from pipeline.annotations import RuptureAnnotation, write_rupture_csv
from pipeline.errors import ConsentError, MetadataError
from pipeline.ids import ID_RULE, is_valid_id, make_private_dir
from pipeline.sidecar import LANGUAGES, check_consent, read_sidecar

CONSENT_KEYS = ("analysis", "research_use", "given_by", "date")  # the consent record that travels with a session


def export_reviews(settings, out_dir: str | Path) -> dict[str, list[str]]:
    """Write reviewed sessions as annotated sessions in the training format (see :mod:`models.dataset`).

    For each analysed session with at least one review whose consent allows research use:
    ``<out>/<session_id>/`` with the recording (copied while the clinic retains it), ``metadata.json`` (with
    the consent record) and ``ruptures.csv``, private to the service user (folders 0700, files 0600). A flag
    judged *rupture* or *rupture, repaired* becomes an episode of the flag's type (marker ``repaired`` for the
    latter); *no rupture* adds none, so the stretch counts as ordinary talk.

    Research use must be consented twice over: in the database (``research_use``, from the consent checked when
    the session was analysed) and in the consent record kept next to the retained recording (the clinic's
    current record: consent can be withdrawn). Every other session is skipped with its reason and the refusal is
    audited. Each exported folder is recorded (:meth:`Store.record_export`) so that purging the client reaches it.

    Parameters
    ----------
    settings : Settings
        ``inbox_dir`` must name the nightly inbox whose ``done/`` folder holds the recordings.
    out_dir : str or Path
        The export folder; created when missing, existing session folders are never overwritten.

    Returns
    -------
    dict
        ``{"exported": [session ids], "skipped": ["<session id>: reason", ...], "left_out": ["<session id>: what
        of an exported session was left out", ...]}``; each reason is one line.

    Raises
    ------
    OSError
        The export folder cannot be written (a session folder written so far stays recorded as an export).
    """
    store = Store.for_settings(settings)
    out = Path(out_dir)
    result: dict[str, list[str]] = {"exported": [], "skipped": [], "left_out": []}
    by_session: dict[str, list[dict]] = {}
    for r in store.reviews():
        by_session.setdefault(r["session_id"], []).append(r)
    for session_id, reviews in sorted(by_session.items()):
        if not is_valid_id(session_id):  # a row from before ids were checked must not name a path
            result["skipped"].append(f"{session_id!r}: not a valid session id ({ID_RULE}); not exported")
            continue
        row = store.session(session_id)
        if row is None:
            result["skipped"].append(f"{session_id}: the session was purged")
            continue
        audio = find_recording(settings.inbox_dir, row)
        record, refusal = research_consent(row, audio, session_sidecar(settings.inbox_dir, row))
        if refusal is not None:
            result["skipped"].append(f"{session_id}: {refusal}")
            store.audit("reviews exported", actor="alliance export-reviews", outcome="refused",
                        client_id=row["client_id"], session_id=session_id, detail=refusal)
            continue
        if audio is None or record is None:
            result["skipped"].append(f"{session_id}: the recording is no longer retained")
            continue
        folder = out / session_id
        if folder.exists():
            result["skipped"].append(f"{session_id}: {folder} already exists")
            continue
        make_private_dir(folder)
        # recorded before anything is copied, so even a copy cut short by a full disk is known to purge
        store.record_export(session_id=session_id, client_id=row["client_id"], path=folder)
        target = folder / f"recording{audio.suffix.lower()}"
        shutil.copyfile(audio, target)  # not copy2: the retained file's permission bits must not travel
        # the session's own record: language (or auto), participants with their roles, ids and ages as the clinic
        # gave them; never a name (research data leaves the clinic: 5 December trial)
        language = record.get("language") if record.get("language") in LANGUAGES else None
        given = record.get("participants") if isinstance(record.get("participants"), list) else None
        participants = ([{k: p[k] for k in PARTICIPANT_KEYS if k in p} for p in given if isinstance(p, dict)]
                        if given else [{"role": "therapist", "id": row["therapist_id"]}, {"role": "client"}])
        meta = {"session_id": session_id, "client_id": row["client_id"], "language": language,
                "participants": participants, "source": "therapist reviews exported by alliance export-reviews",
                "consent": {k: record["consent"][k] for k in CONSENT_KEYS if k in record["consent"]}}
        if isinstance(record.get("client_age"), (int, float)):
            meta["client_age"] = record["client_age"]
        (folder / "metadata.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        notes = [RuptureAnnotation(r["start_s"], r["end_s"], r["marker_type"],
                                   "repaired" if r["verdict"] == "repaired" else None)
                 for r in reviews if r["verdict"] in ("rupture", "repaired")]
        kept, dropped = _merge_touching(notes)
        write_rupture_csv(folder / "ruptures.csv", kept)
        for f in (target, folder / "metadata.json", folder / "ruptures.csv"):
            f.chmod(0o600)
        result["left_out"] += [f"{session_id}: the {d.label} verdict at {d.start:.0f}–{d.end:.0f} s overlaps an episode "
                              "of the other type and was left out (episodes cannot overlap); annotate it by hand"
                              for d in dropped]
        store.audit("reviews exported", actor="alliance export-reviews", outcome="success", client_id=row["client_id"],
                    session_id=session_id, detail=f"{len(reviews)} reviews, {len(notes)} episodes, "
                                                  f"copied to {folder.resolve()}")
        result["exported"].append(session_id)
    return result


PARTICIPANT_KEYS = ("role", "id", "age")  # what of a participant leaves with research data


def research_consent(row: dict, audio: Path | None, sidecar: Path | None) -> tuple[dict | None, str | None]:
    """Whether a session may leave as research data: its consent record, or why not.

    Parameters
    ----------
    row : dict
        The session's database row (``research_use`` as recorded when it was analysed).
    audio : Path or None
        The retained recording in ``<inbox>/done/``.
    sidecar : Path or None
        The sidecar delivered with this session's recording (:func:`flows.inbox.session_sidecar`), which holds
        the clinic's consent record.

    Returns
    -------
    (record, refusal) : (dict, None) or (None, str)
        The sidecar (its ``consent`` checked: valid for the client's age and giving research use), or a one-line
        reason the session may not be exported. A session without a retained recording is not judged on its
        sidecar (``(None, None)``: the caller skips it for that).
    """
    if row.get("research_use") is not True:
        said = "was not recorded" if row.get("research_use") is None else "was not given"
        return None, (f"consent to research use {said} when the session was analysed (research_use); only "
                      "sessions whose consent allows research use are exported")
    if audio is None:
        return None, None
    if sidecar is None:
        return None, (f"no consent record of this session next to the retained recording ({audio.name}); "
                      "research use cannot be confirmed, not exported")
    try:
        record = read_sidecar(sidecar)
        consent = check_consent(record, source=sidecar)
    except (MetadataError, ConsentError) as exc:
        return None, f"{str(exc).splitlines()[0]}; research use cannot be confirmed, not exported"
    if not consent.research_use:
        return None, (f"consent to research use was not given ({sidecar.name}: consent.research_use is false); "
                      "only sessions whose consent allows research use are exported")
    return record, None


def _merge_touching(notes):
    """Episodes of one type that overlap or touch become one (flags of one type can touch); an episode of the
    other type overlapping one already kept is cut to the part after it, or, with nothing left, returned as dropped.

    Returns
    -------
    (kept, dropped) : two lists of RuptureAnnotation
    """
    out, dropped = [], []
    for n in sorted(notes, key=lambda n: n.start):
        if out and n.start <= out[-1].end:
            if n.label == out[-1].label:
                out[-1] = RuptureAnnotation(out[-1].start, max(out[-1].end, n.end), n.label, out[-1].marker or n.marker)
                continue
            cut = RuptureAnnotation(out[-1].end, n.end, n.label, n.marker)
            if cut.end - cut.start < 1.0:
                dropped.append(n)
                continue
            n = cut
        out.append(n)
    return out, dropped
