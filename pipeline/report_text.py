"""Interface text of the session report in Dutch and English (``ALLIANCE_UI_LANGUAGE``).

Dutch uses the clinical terms therapists use: alliantie, breuk, terugtrekking, confrontatie, herstel.
"""

from __future__ import annotations

REPORT_TEXT = {
    "nl": {
        "session": "Sessie", "client": "cliënt", "date": "datum", "recording": "Opname", "language": "taal",
        "model": "model", "threshold": "drempel", "created": "gemaakt",
        "notice": "Signalen markeren stukken om terug te kijken. Ze zijn geen diagnose en zeggen op zichzelf niets "
                  "over de alliantie.",
        "roles_by": "Rollen bepaald met", "speakers_by": "Sprekers gevonden met",
        "who_when": "Wie sprak wanneer", "overlap": "overlap", "silence": "stilte ≥ 3 s", "flag": "signaal",
        "turn_taking": "Beurtwisseling", "speaker": "spreker", "role": "rol", "speech_time": "spreektijd",
        "share": "aandeel spraak", "turns": "beurten",
        "flagged": "Gesignaleerd om terug te kijken", "no_flags": "Geen enkel stuk haalde de drempel.",
        "probability": "kans", "why": "Waarom", "no_reason": "geen afzonderlijke marker viel op",
        "no_words": "geen woorden herkend in dit stuk", "listen": "Beluister dit stuk",
        "listen_app": "Beluister dit stuk in de beoordelingsapp (alliance web) zolang de opname bewaard wordt.",
        "transcript": "Transcript", "no_speech": "geen spraak herkend",
        "markers": "Alliantiemarkers over de sessie",
        "markers_note": "Berekend uit de beurten, het transcript en de prosodie van de hele sessie",
        "age": "leeftijd cliënt", "years": "jaar",
        "marker": "marker", "value": "waarde", "unit": "eenheid", "earlier": "eerdere sessies", "meaning": "betekenis",
        "windows": "Markers per venster", "window": "venster", "warning": "Let op",
        "withdrawal": "terugtrekking", "confrontation": "confrontatie",
        "therapist": "therapeut", "parent": "ouder", "unknown": "onbekend",
        "duration": "Duur", "gaps": "Gaten bij sprekerswissel", "overlaps": "Overlap bij sprekerswissel",
        "interruptions": "Onderbrekingen", "latency": "Reactietijd cliënt (gemiddeld)", "longest": "Langste stilte",
        "silence_share": "Aandeel stilte", "overlapped_speech": "overlappende spraak", "mean": "gemiddeld",
        "successful": "waarvan de ander binnen 1 s stopte", "overlap_backchannels": "Korte instemming door de ander heen",
        "overlap_detected": "Door elkaar praten (gehoord in de opname)",
    },
    "en": {
        "session": "Session", "client": "client", "date": "date", "recording": "Recording", "language": "language",
        "model": "model", "threshold": "threshold", "created": "created",
        "notice": "Flags mark stretches for the therapist to review. They are not a diagnosis and say nothing on "
                  "their own about the alliance.",
        "roles_by": "Roles assigned by", "speakers_by": "Speakers found by",
        "who_when": "Who spoke when", "overlap": "overlap", "silence": "silence ≥ 3 s", "flag": "flag",
        "turn_taking": "Turn-taking", "speaker": "speaker", "role": "role", "speech_time": "speech time",
        "share": "share of speech", "turns": "turns",
        "flagged": "Flagged for review", "no_flags": "No stretch reached the flag threshold.",
        "probability": "probability", "why": "Why", "no_reason": "no single marker stood out",
        "no_words": "no words recognised in this stretch", "listen": "Listen to this stretch",
        "listen_app": "Listen to this stretch in the review app (alliance web) while the recording is retained.",
        "transcript": "Transcript", "no_speech": "no speech recognised",
        "markers": "Alliance markers over the session",
        "markers_note": "Computed from the turns, the transcript and the prosody of the whole session",
        "age": "client age", "years": "years",
        "marker": "marker", "value": "value", "unit": "unit", "earlier": "earlier sessions", "meaning": "meaning",
        "windows": "Markers per window", "window": "window", "warning": "Warning",
        "withdrawal": "withdrawal", "confrontation": "confrontation",
        "therapist": "therapist", "parent": "parent", "unknown": "unknown",
        "duration": "Duration", "gaps": "Gaps at speaker changes", "overlaps": "Overlaps at speaker changes",
        "interruptions": "Interruptions", "latency": "Client response latency (mean)", "longest": "Longest silence",
        "silence_share": "Share of silence", "overlapped_speech": "overlapped speech", "mean": "mean",
        "successful": "after which the other stopped within 1 s", "overlap_backchannels": "Brief agreement over the speaker",
        "overlap_detected": "Talking at the same time (heard in the recording)",
    },
}
