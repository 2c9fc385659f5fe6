"""Map diarized speakers to roles: therapist, client, parent.

For now a documented rule (the issue on speaker roles replaces it with voice
profiles and cues): in child and adolescent therapy the therapist usually
holds the floor longest, so

* the speaker with the most speech time is the ``therapist``;
* the speaker with the second most is the ``client``;
* any further speakers are ``parent``.

A per-session override (from the session metadata) always wins.
"""

from __future__ import annotations

from typing import Mapping

from pipeline.types import ROLES, Diarization, RoleAssignment

RULE_MOST_SPEECH = "most-speech-is-therapist"
RULE_OVERRIDE = "session-override"


def assign_roles(diarization: Diarization, *, override: Mapping[str, str] | None = None) -> RoleAssignment:
    """Assign a role to every speaker.

    Parameters
    ----------
    diarization : Diarization
        Speaker turns.
    override : mapping of str to str, optional
        Speaker label → role from the session metadata; must cover every
        speaker it names with one of ``therapist``, ``client``, ``parent``.
        Speakers it does not name fall back to the rule.

    Returns
    -------
    RoleAssignment
        Roles and the rule that decided them.

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
    by_time = sorted(times, key=lambda s: (-times[s], s))
    rule_roles = {s: ("therapist" if i == 0 else "client" if i == 1 else "parent") for i, s in enumerate(by_time)}
    if not override:
        return RoleAssignment(roles=rule_roles, rule=RULE_MOST_SPEECH)
    roles = {s: override.get(s, rule_roles[s]) for s in by_time}
    return RoleAssignment(roles=roles, rule=RULE_OVERRIDE)
