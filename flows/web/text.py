"""The review web app's interface text, in Dutch (the default) and English (``ALLIANCE_UI_LANGUAGE``)."""

TEXT = {
    "nl": {"title": "Alliantiemonitor", "login": "Inloggen", "user": "Therapeut", "password": "Wachtwoord",
           "bad_login": "Onbekende naam of verkeerd wachtwoord.", "logout": "Uitloggen",
           "sessions": "Uw sessies", "session": "Sessie", "client": "Cliënt", "date": "Datum", "flags": "Signalen",
           "reviewed": "beoordeeld", "open_report": "Rapport openen", "no_sessions": "Nog geen geanalyseerde sessies.",
           "flag": "Signaal", "verdict": "Uw oordeel", "note": "Notitie (optioneel)", "save": "Opslaan",
           "rupture": "breuk", "no_rupture": "geen breuk", "repaired": "breuk, hersteld",
           "withdrawal": "terugtrekking", "confrontation": "confrontatie", "probability": "kans",
           "no_audio": "De opname is niet meer bewaard.", "saved": "Oordeel opgeslagen.",
           "intro": "Signalen zijn bedoeld om terug te kijken, niet als diagnose van de alliantie.",
           "trend": "Verloop over sessies", "flags_count": "signalen",
           "locked": "Te veel mislukte inlogpogingen: deze naam of deze computer is tijdelijk geblokkeerd. "
                     "Probeer het over {minutes} minuten opnieuw.",
           "refused": "Geweigerd: dit verzoek kwam niet van de eigen pagina's van deze site, of het formulier is "
                      "verlopen. Laad de pagina opnieuw.",
           "back": "Terug"},
    "en": {"title": "Alliance monitor", "login": "Log in", "user": "Therapist", "password": "Password",
           "bad_login": "Unknown name or wrong password.", "logout": "Log out",
           "sessions": "Your sessions", "session": "Session", "client": "Client", "date": "Date", "flags": "Flags",
           "reviewed": "reviewed", "open_report": "Open report", "no_sessions": "No analysed sessions yet.",
           "flag": "Flag", "verdict": "Your verdict", "note": "Note (optional)", "save": "Save",
           "rupture": "rupture", "no_rupture": "no rupture", "repaired": "rupture, repaired",
           "withdrawal": "withdrawal", "confrontation": "confrontation", "probability": "probability",
           "no_audio": "The recording is no longer retained.", "saved": "Verdict saved.",
           "intro": "Flags are for review, not a diagnosis of the alliance.",
           "trend": "Trend across sessions", "flags_count": "flags",
           "locked": "Too many failed logins: this name or this computer is locked for now. "
                     "Try again in {minutes} minutes.",
           "refused": "Refused: this request did not come from this site's own pages, or its form has expired. "
                      "Reload the page.",
           "back": "Back"},
}
