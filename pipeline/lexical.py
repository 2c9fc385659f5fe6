"""Lexical alliance markers: minimal responses, questions, negations, refusals, complaints, deference, backchannels.

Word lists per language live in a TOML data file (``pipeline/data/lexicon.toml``
by default; ``ALLIANCE_FEATURES__LEXICON_PATH`` points at a researcher's own
copy). The lists operationalise the 3RS rupture markers [1]_: *withdrawal*
as minimal responses, "I don't know" answers and deference ("als jij het
zegt", "you know best"), *confrontation* as complaints and refusals;
backchannels ("mm", "ja") are listener responses
that do not take the floor [2]_. Syllables are counted from spelling (groups
of vowel letters), a standard approximation for speaking-rate estimates from
transcripts; it is close for Dutch and rougher for English.

References
----------
.. [1] Eubanks, C. F., Muran, J. C., Safran, J. D. (2015). Rupture Resolution
   Rating System (3RS): Manual. Mount Sinai-Beth Israel Medical Center.
.. [2] Yngve, V. H. (1970). On getting a word in edgewise. Papers from the
   Sixth Regional Meeting of the Chicago Linguistic Society, 567–577.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.errors import InputError
from pipeline.types import Utterance, UtteranceMarkers

DEFAULT_LEXICON = Path(__file__).parent / "data" / "lexicon.toml"
CATEGORIES = ("minimal_responses", "backchannels", "negations", "refusals", "complaints", "deference",
              "question_words")
MAX_BACKCHANNEL_WORDS = 3
MAX_LEXICON_BYTES = 1_000_000  # the shipped word lists are 6 kB
_TOKEN = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*", re.UNICODE)
_VOWELS = {"nl": "aeiouyáéíóúàèëïöüâêîôû", "en": "aeiouyáéíóúàèëïöü"}


@dataclass(frozen=True)
class Lexicon:
    """Phrases per language and category, each phrase a tuple of lower-case tokens."""

    path: str
    phrases: dict[str, dict[str, tuple[tuple[str, ...], ...]]]

    def for_language(self, language: str | None) -> dict[str, tuple[tuple[str, ...], ...]]:
        """The lists of ``language``; for a language without lists, all languages' lists together."""
        if language in self.phrases:
            return self.phrases[language]
        merged: dict[str, tuple[tuple[str, ...], ...]] = {cat: () for cat in CATEGORIES}
        for cats in self.phrases.values():
            for cat, phrases in cats.items():
                merged[cat] = tuple(dict.fromkeys(merged.get(cat, ()) + phrases))
        return merged


def tokens(text: str) -> list[str]:
    """Lower-case word tokens of ``text``; punctuation dropped, apostrophes and hyphens inside words kept.

    A token is a run of letters or digits (any script), possibly joined by
    an apostrophe or hyphen (``don't``, ``well-known``). A typographic
    apostrophe (U+2019) becomes a plain ``'``. Underscores split tokens.

    Parameters
    ----------
    text : str
        An utterance or a lexicon phrase.

    Returns
    -------
    list of str
        In the order they occur; empty when ``text`` has no letters or digits.
    """
    return [t.replace("’", "'") for t in _TOKEN.findall(text.lower())]


def load_lexicon(path: str | Path | None = None) -> Lexicon:
    """Read the word lists.

    Parameters
    ----------
    path : str or Path, optional
        A TOML file with one table per language code (``[nl]``, ``[en]``)
        holding lists of strings named as in ``CATEGORIES``; default the
        shipped ``pipeline/data/lexicon.toml``.

    Returns
    -------
    Lexicon

    Raises
    ------
    InputError
        The file is missing, a folder, not a regular file (a pipe, a device), over
        :data:`MAX_LEXICON_BYTES`, empty, not valid TOML, has a table that is not a
        language code of :data:`pipeline.sidecar.LANGUAGES`, or a list holds
        something other than non-empty strings; the message names the file and
        the entry.
    """
    from pipeline.errors import not_a_file
    from pipeline.sidecar import LANGUAGES

    path = Path(path) if path is not None else DEFAULT_LEXICON
    what = not_a_file(path)
    if what == "a folder":
        raise InputError(path, "is a folder; give the lexicon's .toml file")
    if what not in (None, "missing"):  # a pipe or /dev/zero would be read for ever (second trial)
        raise InputError(path, f"is not a regular file ({what}); give the lexicon's .toml file")
    try:
        if what is None and path.stat().st_size > MAX_LEXICON_BYTES:
            raise InputError(path, f"is {path.stat().st_size / 1e6:.1f} MB; word lists fit in kilobytes (at most "
                                   f"{MAX_LEXICON_BYTES // 1_000_000} MB), so this is not a lexicon")
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "lexicon file not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a valid TOML lexicon ({exc})") from None
    if not raw:
        raise InputError(path, "holds no word lists; add a table per language, for example [nl] with "
                               "minimal_responses = [\"weet ik niet\"]")
    phrases: dict[str, dict[str, tuple[tuple[str, ...], ...]]] = {}
    for lang, table in raw.items():
        if not isinstance(table, dict):
            raise InputError(path, f"'{lang}' must be a table of word lists like [nl]")
        if lang not in LANGUAGES:  # '[withdrawal]' was taken for a language (second trial): no session would use it
            raise InputError(path, f"[{lang[:40]}] is not a language the analysis transcribes; the tables are "
                                   f"{', '.join(f'[{code}]' for code in LANGUAGES)}")
        cats = {}
        for cat in CATEGORIES:
            items = table.get(cat, [])
            if not isinstance(items, list) or not all(isinstance(i, str) and tokens(i) for i in items):
                raise InputError(path, f"[{lang}] {cat} must be a list of non-empty strings")
            cats[cat] = tuple(dict.fromkeys(tuple(tokens(i)) for i in items))
        unknown = sorted(set(table) - set(CATEGORIES))
        if unknown:
            raise InputError(path, f"[{lang}] has unknown lists {unknown}; known: {', '.join(CATEGORIES)}")
        phrases[lang] = cats
    return Lexicon(str(path), phrases)


def count_phrases(toks: Sequence[str], phrases: Sequence[tuple[str, ...]],
                  confidence: Sequence[float] | None = None) -> float:
    """Non-overlapping occurrences of any phrase in ``toks``, longest phrase first at each position.

    Parameters
    ----------
    toks : sequence of str
        Tokens (:func:`tokens`).
    phrases : sequence of tuple of str
    confidence : sequence of float in [0, 1], optional
        Per token, the ASR's probability of the word it came from. Each occurrence then counts the mean
        confidence of its tokens instead of 1, so a phrase Whisper only guessed at counts little.

    Returns
    -------
    float
        The number of occurrences (an integer without ``confidence``), or their summed confidence.
    """
    by_len = sorted(phrases, key=len, reverse=True)
    i, n = 0, 0.0
    while i < len(toks):
        for p in by_len:
            if tuple(toks[i:i + len(p)]) == p:
                n += 1.0 if confidence is None else float(np.mean(confidence[i:i + len(p)]))
                i += len(p)
                break
        else:
            i += 1
    return n if confidence is not None else int(n)


def covered_by(toks: Sequence[str], phrases: Sequence[tuple[str, ...]]) -> bool:
    """Whether ``toks`` is one or more of the phrases back to back (and not empty).

    Used to decide whether a whole utterance is a minimal response or a
    backchannel (``"ja ja"``, ``"weet ik niet"``). Phrases may repeat.

    Parameters
    ----------
    toks : sequence of str
        Tokens of one utterance (:func:`tokens`).
    phrases : sequence of tuple of str
        Candidate phrases, each a tuple of tokens.

    Returns
    -------
    bool
        False for an empty ``toks``.
    """
    if not toks:
        return False
    reach = [True] + [False] * len(toks)
    for i in range(len(toks)):
        if reach[i]:
            for p in phrases:
                if tuple(toks[i:i + len(p)]) == p:
                    reach[i + len(p)] = True
    return reach[-1]


def syllables(word: str, language: str | None = None) -> int:
    """Syllables of one word from its spelling: the number of vowel-letter groups.

    For English a final silent "e" (not "-le") does not count. Any word with
    letters has at least one syllable; digits and symbols have none.

    Parameters
    ----------
    word : str
    language : str, optional
        ``"nl"`` or ``"en"``; others use the Dutch vowel set.

    Returns
    -------
    int >= 0
    """
    w = word.lower()
    vowels = _VOWELS.get(language or "nl", _VOWELS["nl"])
    if not any(c.isalpha() for c in w):
        return 0
    groups = len(re.findall(f"[{vowels}]+", w))
    if language == "en" and w.endswith("e") and not w.endswith("le") and groups > 1:
        groups -= 1
    return max(1, groups)


def utterance_markers(utterances: Sequence[Utterance], *, language: str | None,
                      lexicon: Lexicon) -> tuple[UtteranceMarkers, ...]:
    """Lexical markers and speaking rate of each utterance.

    An utterance is a *question* when it ends with "?" (Whisper punctuates)
    or starts with a wh-word from the lists; a *minimal response* when it is
    one word, or nothing but minimal-response phrases ("ja", "weet ik niet",
    "I don't know", "dunno"); a *backchannel* when it is at most
    ``MAX_BACKCHANNEL_WORDS`` words, all backchannel phrases, and does not
    answer another speaker's question ("ja" after "Was het leuk?" is an
    answer, a minimal one).

    Parameters
    ----------
    utterances : sequence of Utterance
        In time order, words carrying start/end in seconds.
    language : str or None
        Session language (``"nl"``, ``"en"``); another or None uses every
        language's lists together (mixed or undetected sessions).
    lexicon : Lexicon

    Negations, refusals, complaints and deference are counted weighted by the ASR's
    confidence: each phrase counts the mean probability Whisper gave its words
    (:func:`count_phrases`), so a child's mumbled turn that the recogniser
    guessed at ("wil niet" at probability 0.3) weighs 0.3, not 1. Questions,
    minimal responses and backchannels are decided on the words as
    recognised: they rest on the utterance's shape (length, final "?") as
    much as on its words.

    Returns
    -------
    tuple of UtteranceMarkers
        One per utterance, in the same order. Speaking rate is syllables
        divided by the utterance's span in seconds (NaN for a zero span).
    """
    lists = lexicon.for_language(language)
    out = []
    prev, prev_question = None, False
    for u in utterances:
        toks, conf = [], []
        for w in u.words:  # each token with the probability of the word it came from
            word_toks = tokens(w.text)
            toks += word_toks
            conf += [min(max(float(w.probability), 0.0), 1.0) if math.isfinite(w.probability) else 1.0] * len(word_toks)
        n_syl = sum(syllables(t, language) for t in toks)
        span = u.end - u.start
        latency = (u.start - prev.end) if prev is not None and prev.speaker != u.speaker else math.nan
        out.append(UtteranceMarkers(
            speaker=u.speaker, role=u.role, start=u.start, end=u.end, n_words=len(toks), n_syllables=n_syl,
            speaking_rate_syl_s=round(n_syl / span, 3) if span > 0 else math.nan,
            is_question=u.text.rstrip().endswith("?") or (bool(toks) and (toks[0],) in lists["question_words"]),
            is_minimal_response=len(toks) == 1 or covered_by(toks, lists["minimal_responses"]),
            is_backchannel=(len(toks) <= MAX_BACKCHANNEL_WORDS and covered_by(toks, lists["backchannels"])
                            and not (prev_question and prev.speaker != u.speaker)),
            negations=round(count_phrases(toks, lists["negations"], conf), 3),
            refusals=round(count_phrases(toks, lists["refusals"], conf), 3),
            complaints=round(count_phrases(toks, lists["complaints"], conf), 3),
            deference=round(count_phrases(toks, lists["deference"], conf), 3),
            latency_s=round(latency, 3) if math.isfinite(latency) else math.nan,
        ))
        prev, prev_question = u, out[-1].is_question
    return tuple(out)
