"""The review web app's interface text: a view on the ``web.*`` keys of the text catalogue.

Every word lives in ``pipeline/data/text.toml`` (:mod:`pipeline.i18n`), Dutch by default and English with
``ALLIANCE_UI_LANGUAGE=en``; the words the review page shares with the report (flag kinds, probability bands,
roles, the model caveat, the 3RS markers) are the report's own keys.
"""

from __future__ import annotations

from pipeline.i18n import LANGUAGES, catalogue


def web_text(language: str) -> dict[str, str]:
    """Every ``web.*`` text of the catalogue in ``language``, keyed without the prefix.

    Parameters
    ----------
    language : {"nl", "en"}

    Returns
    -------
    dict of str to str
    """
    return {k[len("web."):]: v[language] for k, v in catalogue().items() if k.startswith("web.")}


TEXT = {language: web_text(language) for language in LANGUAGES}
