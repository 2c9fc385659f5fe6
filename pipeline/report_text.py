"""The report's interface text per language, as one dict per language (a view on ``pipeline/data/text.toml``).

Dutch uses the clinical terms therapists use: alliantie, breuk, terugtrekking, confrontatie, herstel. The
texts themselves live in the catalogue (:mod:`pipeline.i18n`); this module only gathers its ``report.*`` keys
into the mapping the template reads (``x.flagged``, ...).
"""

from __future__ import annotations

from pipeline.i18n import LANGUAGES, catalogue


def report_text(language: str) -> dict[str, str]:
    """Every ``report.*`` text of the catalogue in ``language``, keyed without the prefix.

    Parameters
    ----------
    language : {"nl", "en"}
        The reader's language.

    Returns
    -------
    dict of str to str
        For example ``{"summary": ..., "silence": ...}``; placeholders are
        left unfilled.

    Raises
    ------
    KeyError
        A ``report.*`` key has no text in ``language`` (also for a language
        the catalogue does not have).
    """
    return {k[len("report."):]: v[language] for k, v in catalogue().items() if k.startswith("report.")}


REPORT_TEXT = {language: report_text(language) for language in LANGUAGES}
