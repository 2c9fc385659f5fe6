"""Lexical markers on small transcripts with known answers."""

from __future__ import annotations

import math

import pytest

from pipeline.errors import InputError
from pipeline.lexical import count_phrases, load_lexicon, syllables, tokens, utterance_markers
from pipeline.types import Utterance, Word

LEX = load_lexicon()


def _utt(text, speaker="C", role="client", start=0.0, end=1.0):
    return Utterance(speaker, role, start, end, (Word(start, end, text, 1.0, speaker),))


def _marks(*texts, language="nl"):
    utts = [_utt(t, start=2.0 * i, end=2.0 * i + 1.0) for i, t in enumerate(texts)]
    return utterance_markers(utts, language=language, lexicon=LEX)


def test_tokens_drop_punctuation_and_keep_contractions():
    assert tokens("Nee, ik WEET het niet!") == ["nee", "ik", "weet", "het", "niet"]
    assert tokens("I don’t know...") == ["i", "don't", "know"]


@pytest.mark.parametrize("word,language,n", [("gesprek", "nl", 2), ("ik", "nl", 1), ("vervelend", "nl", 3),
                                             ("mooi", "nl", 1), ("table", "en", 2), ("make", "en", 1),
                                             ("understand", "en", 3), ("42", "nl", 0)])
def test_syllables_from_spelling(word, language, n):
    assert syllables(word, language) == n


def test_minimal_responses_in_dutch_and_english():
    m = _marks("Weet ik niet.", "Ik weet het niet", "Ja.", "Ik ben gisteren met mijn vader naar het voetbal geweest")
    assert [x.is_minimal_response for x in m] == [True, True, True, False]
    m = _marks("I don't know.", "dunno", "I went to the park with my dad", language="en")
    assert [x.is_minimal_response for x in m] == [True, True, False]


def test_backchannels_questions_negations_refusals_complaints():
    m = _marks("mm", "ja ja", "ja, dat klopt wel maar het was lastig", "Wat deed je toen", "Gaat het?", "Vertel eens.",
               "Nee, ik wil niet, dit is saai en stom.")
    assert [x.is_backchannel for x in m] == [True, True, False, False, False, False, False]
    assert [x.is_question for x in m] == [False, False, False, True, True, False, False]
    last = m[-1]
    assert (last.negations, last.refusals, last.complaints) == (2, 1, 2)  # nee + niet; "ik wil niet"; saai + stom


def test_speaking_rate_and_latency():
    utts = [_utt("hoe gaat het", "T", "therapist", 0.0, 1.0), _utt("heel goed eigenlijk", "C", "client", 3.0, 5.0),
            _utt("mooi", "T", "therapist", 4.5, 5.0)]
    m = utterance_markers(utts, language="nl", lexicon=LEX)
    assert m[1].n_syllables == 1 + 1 + 3  # heel, goed, ei-gen-lijk
    assert m[1].speaking_rate_syl_s == pytest.approx(m[1].n_syllables / 2.0)
    assert m[1].latency_s == pytest.approx(2.0) and m[2].latency_s == pytest.approx(-0.5)
    assert math.isnan(m[0].latency_s)


def test_unknown_language_uses_every_list():
    m = _marks("dunno", "weet ik niet", language=None)
    assert all(x.is_minimal_response for x in m)


def test_count_phrases_takes_the_longest_match():
    assert count_phrases(["ik", "wil", "niet", "en", "wil", "niet"], [("wil", "niet"), ("ik", "wil", "niet")]) == 2


def test_a_researcher_can_extend_the_lists(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[nl]\nminimal_responses = ["pff"]\ncomplaints = ["suf"]\n')
    lex = load_lexicon(path)
    m = utterance_markers([_utt("pff"), _utt("dit is suf en nog wat")], language="nl", lexicon=lex)
    assert m[0].is_minimal_response and m[1].complaints == 1


@pytest.mark.parametrize("text,problem", [("[nl\nx = 1", "not a valid TOML"),
                                          ("[nl]\nnegations = [1, 2]", "negations must be a list"),
                                          ("[nl]\ncomplaint = ['saai']", "unknown lists"),
                                          ("nl = 3", "must be a table")])
def test_bad_lexicon_files_name_the_file_and_the_problem(tmp_path, text, problem):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=f"bad.toml: .*{problem}"):
        load_lexicon(path)
    with pytest.raises(InputError, match="missing.toml: lexicon file not found"):
        load_lexicon(tmp_path / "missing.toml")


def test_empty_or_folder_lexicon_is_refused(tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing yet\n")
    with pytest.raises(InputError, match="empty.toml: holds no word lists"):
        load_lexicon(empty)
    with pytest.raises(InputError, match="is a folder"):
        load_lexicon(tmp_path)


def test_a_language_table_without_some_lists_still_works(tmp_path):
    path = tmp_path / "few.toml"
    path.write_text('[nl]\nminimal_responses = ["pff"]\n')
    m = utterance_markers([_utt("wat doe je")], language=None, lexicon=load_lexicon(path))
    assert m[0].is_question is False and m[0].negations == 0  # no question words listed: only "?" counts


def test_a_refusal_whisper_only_guessed_at_counts_little():
    from pipeline.lexical import load_lexicon, utterance_markers
    from pipeline.types import Utterance, Word

    def utt(prob):
        words = (Word(0.0, 0.4, " Ik", prob, "B"), Word(0.4, 0.8, " wil", prob, "B"), Word(0.8, 1.2, " niet.", prob, "B"))
        return Utterance("B", "client", 0.0, 1.2, words)

    sure, mumbled = utterance_markers([utt(0.95), utt(0.3)], language="nl", lexicon=load_lexicon())
    assert sure.refusals == pytest.approx(0.95) and mumbled.refusals == pytest.approx(0.3)
    assert sure.negations == pytest.approx(0.95)  # "niet" inside the refusal phrase is a negation too


def test_deference_is_counted_in_dutch_and_english_and_weighted_by_asr_confidence():
    # 3RS "deferential and appeasing": giving way to the therapist instead of saying what one thinks
    m = _marks("Als jij het zegt.", "Nou ja, jij weet het beter, doe maar wat jij denkt.",
               "Ik ben gisteren met mijn vader naar het voetbal geweest")
    assert [x.deference for x in m] == [1, 2, 0]
    m = _marks("If you say so.", "Whatever you want, you know best.", "We went to the park and it was fun",
               language="en")
    assert [x.deference for x in m] == [1, 2, 0]

    def utt(prob):
        words = tuple(Word(0.3 * i, 0.3 * i + 0.3, w, prob, "C") for i, w in enumerate(("if", "you", "say", "so")))
        return Utterance("C", "client", 0.0, 1.2, words)

    sure, mumbled = utterance_markers([utt(0.9), utt(0.25)], language="en", lexicon=LEX)
    assert sure.deference == pytest.approx(0.9) and mumbled.deference == pytest.approx(0.25)


def test_a_lexicon_without_a_deference_list_counts_none(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text('[nl]\ncomplaints = ["saai"]\n')
    m = utterance_markers([_utt("als jij het zegt, saai")], language="nl", lexicon=load_lexicon(path))
    assert m[0].deference == 0 and m[0].complaints == 1


@pytest.mark.parametrize("text,language,complaints,refusals", [
    ("Hoe lang nog? Ik wil naar huis.", "nl", 2, 0),  # complaints about the parameters of therapy (3RS)
    ("Dit is kinderachtig, het werkt toch niet.", "nl", 2, 0),  # about the activities and progress of therapy
    ("Echt niet, je kan me niet dwingen.", "nl", 0, 2),  # rejecting the intervention
    ("How much longer? Can we stop now?", "en", 2, 1),  # "stop" is also a refusal
    ("This is for babies and you're not helping.", "en", 2, 0),
    ("No way, you can't make me.", "en", 0, 2),
])
def test_confrontation_lists_cover_complaints_about_therapy_and_pressure(text, language, complaints, refusals):
    (m,) = _marks(text, language=language)
    assert (m.complaints, m.refusals) == (complaints, refusals)
