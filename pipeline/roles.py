"""Map diarized speakers to roles: therapist, client, parent.

Evidence is taken in this order, and the assignment records which decided:

1. **Session override** (``speaker_roles`` in the session metadata) always wins
   for the speakers it names.
2. **Therapist voice profile**: when the session names an enrolled therapist
   (``alliance enroll-voice``), the speaker whose mean embedding is most
   similar (cosine) to the profile becomes the therapist, if the similarity
   reaches ``PROFILE_MIN_SIMILARITY``; the similarity is recorded.
3. **Cues** when there is no profile:
   *child voice*: a child's median F0 is higher than an adult's (roughly
   250–400 Hz against 100–220 Hz; Lee, Potamianos & Narayanan 1999), so when
   one speaker's median F0 is clearly above the others' (``CHILD_F0_MARGIN_ST``)
   and either the client is a child (age < 13 in the metadata) or, age
   unknown, that F0 is in the child range (≥ ``CHILD_MIN_F0_HZ``), that
   speaker is the client (a higher voice alone may be a woman beside a man);
   *questions*: the therapist asks more questions, so among the remaining
   speakers the one with most questions per minute of speech is the therapist.
4. **Most speech**: otherwise the speaker who talks most is the therapist,
   the one who talks most of the rest the client, any others parents.

``rule`` lists, joined by ``+``, every piece of evidence that assigned a
role; ``evidence["cues_used"]`` the same as a list.

References
----------
.. [1] Lee, S., Potamianos, A., Narayanan, S. (1999). Acoustics of children's
   speech: developmental changes of temporal and spectral parameters. JASA
   105(3), 1455–1468.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from pipeline.types import ROLES, Diarization, RoleAssignment, Transcript, TurnProsody

RULE_MOST_SPEECH = "most-speech-is-therapist"
RULE_OVERRIDE = "session-override"
RULE_PROFILE = "therapist-voice-profile"
RULE_CHILD_F0 = "child-voice-f0"
RULE_QUESTIONS = "therapist-asks-most-questions"
RULE_CLIENT_REST = "client-most-speech-of-the-rest"

PROFILE_MIN_SIMILARITY = 0.70
CHILD_F0_MARGIN_ST = 3.0
CHILD_MAX_AGE = 13
CHILD_MIN_F0_HZ = 250.0
QUESTION_MARGIN_PER_MIN = 1.0


def speaker_f0_hz(prosody: Sequence[TurnProsody]) -> dict[str, float]:
    """Median F0 (Hz) per speaker, weighting each voiced turn by its duration.

    Each turn's median F0 is weighted by its voiced time (duration times
    voiced fraction, in seconds); the result is the weighted median, the
    lower one on a tie. Turns without a finite F0 or without voiced frames
    are left out. Used as the child-voice cue: children's F0 lies well above
    adults' (Lee, Potamianos & Narayanan 1999 [1]_).

    Parameters
    ----------
    prosody : sequence of TurnProsody
        Per-turn prosody, with ``f0_median_hz`` (Hz; NaN when unvoiced),
        ``voiced_fraction`` in [0, 1] and times in seconds.

    Returns
    -------
    dict of str to float
        Speaker label to median F0 in Hz; a speaker with no voiced turn is
        absent.

    References
    ----------
    .. [1] Lee, S., Potamianos, A., Narayanan, S. (1999). Acoustics of
       children's speech: developmental changes of temporal and spectral
       parameters. JASA 105(3), 1455–1468.
    """
    out: dict[str, float] = {}
    for spk in {p.speaker for p in prosody}:
        vals = [(p.f0_median_hz, (p.end - p.start) * p.voiced_fraction) for p in prosody
                if p.speaker == spk and math.isfinite(p.f0_median_hz) and p.voiced_fraction > 0]
        if vals:
            f0, w = np.array(vals).T
            order = np.argsort(f0)
            cum = np.cumsum(w[order])
            out[spk] = float(f0[order][np.searchsorted(cum, cum[-1] / 2)])
    return out


def questions_per_minute(transcript: Transcript, diarization: Diarization) -> dict[str, float]:
    """Questions (words ending in '?') per minute of each speaker's speech.

    A question is counted at each word whose text ends in ``?`` (Whisper's
    punctuation), so the count depends on the ASR's punctuation.

    Parameters
    ----------
    transcript : Transcript
        Words with their ``speaker`` set.
    diarization : Diarization
        Gives the speakers and each one's speech time (s).

    Returns
    -------
    dict of str to float
        Every speaker of ``diarization`` to questions per minute (1/min);
        0.0 for a speaker without speech time.
    """
    speech = diarization.speech_time_s()
    counts = {s: 0 for s in diarization.speakers}
    for w in transcript.words:
        if w.speaker in counts and w.text.rstrip().endswith("?"):
            counts[w.speaker] += 1
    return {s: (60.0 * counts[s] / speech[s] if speech.get(s, 0) > 0 else 0.0) for s in counts}


def assign_roles(diarization: Diarization, *, override: Mapping[str, str] | None = None,
                 profile_similarity: Mapping[str, float] | None = None,
                 f0_hz: Mapping[str, float] | None = None,
                 questions_per_min: Mapping[str, float] | None = None,
                 client_age: float | None = None) -> RoleAssignment:
    """Assign a role to every speaker from the strongest evidence available.

    Parameters
    ----------
    diarization : Diarization
        Speaker turns.
    override : mapping of str to str, optional
        Speaker label → role from the session metadata; always wins.
    profile_similarity : mapping of str to float, optional
        Cosine similarity of each speaker to the session's enrolled therapist.
    f0_hz : mapping of str to float, optional
        Median F0 per speaker in Hz (see :func:`speaker_f0_hz`).
    questions_per_min : mapping of str to float, optional
        Questions per minute of speech per speaker.
    client_age : float, optional
        Client's age in years from the metadata.

    Returns
    -------
    RoleAssignment
        ``roles``, the ``rule`` that decided the therapist and client, and
        ``evidence`` (similarities, F0 margin in semitones, question rates,
        and a confidence word).

    Raises
    ------
    ValueError
        If the override names an unknown role.
    """
    override = dict(override or {})
    bad = {s: r for s, r in override.items() if r not in ROLES}
    if bad:
        raise ValueError(f"roles must be one of {', '.join(ROLES)}. Got {bad} instead.")
    times = diarization.speech_time_s()
    speakers = sorted(times, key=lambda s: (-times[s], s))
    roles: dict[str, str] = {s: r for s, r in override.items() if s in times}
    free = [s for s in speakers if s not in roles]
    evidence: dict = {}
    rules: list[str] = [RULE_OVERRIDE] if roles else []

    def take(speaker: str, role: str) -> None:
        roles[speaker] = role
        free.remove(speaker)

    if "therapist" not in roles.values() and profile_similarity and free:
        best = max(free, key=lambda s: profile_similarity.get(s, -1.0))
        sim = float(profile_similarity.get(best, -1.0))
        evidence["profile_similarity"] = {s: round(float(v), 3) for s, v in profile_similarity.items()}
        if sim >= PROFILE_MIN_SIMILARITY:
            take(best, "therapist")
            rules.append(RULE_PROFILE)
            evidence["therapist_similarity"] = round(sim, 3)
            others = [v for s, v in profile_similarity.items() if s != best]
            evidence["profile_confidence"] = _confidence(sim - max(others, default=0.0), 0.15, 0.05)
    if "client" not in roles.values() and f0_hz and len(free) >= 1 and len(times) >= 2:
        voiced = {s: f for s, f in f0_hz.items() if s in times and f > 0}
        if len(voiced) >= 2:
            ranked = sorted(voiced, key=lambda s: -voiced[s])
            margin = 12.0 * math.log2(voiced[ranked[0]] / voiced[ranked[1]])
            evidence["f0_median_hz"] = {s: round(v, 1) for s, v in voiced.items()}
            evidence["f0_margin_st"] = round(margin, 2)
            # a higher voice alone may be a woman beside a man: without the client's age it must also be
            # in the child range
            child_voice = (client_age is not None and client_age < CHILD_MAX_AGE) or (
                client_age is None and voiced[ranked[0]] >= CHILD_MIN_F0_HZ)
            if child_voice and margin >= CHILD_F0_MARGIN_ST and ranked[0] in free:
                take(ranked[0], "client")
                rules.append(RULE_CHILD_F0)
                evidence["child_f0_confidence"] = _confidence(margin, 6.0, CHILD_F0_MARGIN_ST)
    if "therapist" not in roles.values() and questions_per_min and len(free) >= 2:
        rates = {s: float(questions_per_min.get(s, 0.0)) for s in free}
        ranked = sorted(rates, key=lambda s: -rates[s])
        lead = rates[ranked[0]] - rates[ranked[1]]
        evidence["questions_per_min"] = {s: round(v, 2) for s, v in rates.items()}
        if lead >= QUESTION_MARGIN_PER_MIN:
            take(ranked[0], "therapist")
            rules.append(RULE_QUESTIONS)
            evidence["questions_confidence"] = _confidence(lead, 3.0, QUESTION_MARGIN_PER_MIN)
    for role, rule in (("therapist", RULE_MOST_SPEECH), ("client", RULE_CLIENT_REST)):
        if role not in roles.values() and free:
            take(free[0], role)  # free keeps the most-speech order
            rules.append(rule)
    for s in list(free):
        take(s, "parent")
    evidence["cues_used"] = list(rules)
    return RoleAssignment(roles={s: roles[s] for s in speakers}, rule="+".join(rules), evidence=evidence)


def role_warnings(roles: RoleAssignment, *, client_expected: bool) -> tuple[str, ...]:
    """Sentences for the report when the roles cannot be right.

    Parameters
    ----------
    roles : RoleAssignment
    client_expected : bool
        True when the session says a client was present (always, in therapy).

    Returns
    -------
    tuple of str
        In English, from the text catalogue (``warn.*``); the report shows them in its language.
    """
    from pipeline.i18n import text

    out = []
    if client_expected and roles.roles and "client" not in roles.roles.values():
        out.append(text("warn.no_client", "en"))
    if "therapist" not in roles.roles.values() and len(roles.roles) >= 2:
        out.append(text("warn.no_therapist", "en"))
    return tuple(out)


def _confidence(value: float, high: float, low: float) -> str:
    """'high', 'medium' or 'low' for a margin against two thresholds."""
    return "high" if value >= high else "medium" if value >= low else "low"


def profile_similarities(speaker_embeddings: Mapping[str, np.ndarray], profile: np.ndarray) -> dict[str, float]:
    """Cosine similarity of each speaker's mean embedding to a therapist profile.

    Both vectors are scaled to unit length first (a zero vector stays zero
    and gives similarity 0).

    Parameters
    ----------
    speaker_embeddings : mapping of str to np.ndarray, shape (dim,)
        Speaker label to mean speaker embedding.
    profile : np.ndarray, shape (dim,)
        The therapist's profile (:func:`pipeline.profiles.load_profile`).

    Returns
    -------
    dict of str to float
        Speaker label to cosine similarity in [-1, 1].

    Raises
    ------
    ValueError
        An embedding's length differs from the profile's.
    """
    p = profile / max(np.linalg.norm(profile), 1e-12)
    return {s: float(np.dot(e / max(np.linalg.norm(e), 1e-12), p)) for s, e in speaker_embeddings.items()}
