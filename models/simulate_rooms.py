"""A second, independent session generator (``rooms``): real voices, simulated rooms, other rupture rules.

The shipped classifier learns from :mod:`models.simulate` (generator ``tts``). A
model that has only seen one generator learns that generator, so this module
makes labelled sessions that differ from it in every respect it can, to measure
transfer inside the project (train on one, score on the other, both ways):

* **voices**: real human speech for part of the utterances, cut in
  utterance-sized stretches (0.3–6 s) from the recordings the project ships
  (Dutch read speech, children's read English, single-speaker stretches of the
  phone call and of meeting-room excerpts, found with their RTTMs); espeak-ng
  voices with named variants (``nl+anika``, ``en-gb-scotland+klatt3``, …), rates
  120–220 words/min and pitches 20–99; children with high pitch, raised
  formants and few words. Rupture utterances (complaints, refusals,
  deference) stay mostly synthetic so that their words can be recognised;
* **phrasing**: phrase banks of their own in Dutch and English;
* **timing**: floor-transfer offsets drawn from log-normal gaps around 200 ms
  and a share of overlaps (Heldner & Edlund 2010), slower for children;
* **ruptures** as the 3RS describes them (Eubanks, Muran & Safran 2015),
  realised by other rules: withdrawal as a per-episode mix of topic avoidance,
  deference, minimal responses with long latencies, and silence, the child
  sometimes turned away from the microphone; confrontation as complaints about
  the therapy or the therapist, rejection and pressure in a raised voice, with
  interruptions that succeed (the therapist stops within 1 s) or fail, and a
  parent who sometimes interrupts. 0–2 episodes of each type per session,
  30–150 s long, placed at random;
* **room**: image-source room impulse responses (pyroomacoustics ``ShoeBox``,
  Scheibler et al. 2018) of rooms 3×3 to 6×5 m with RT60 0.2–0.8 s, the late
  tail continued as decaying noise; speakers at their own distances from one
  microphone; a recording level anywhere from -45 to -15 dBFS of active
  speech; babble, fan, street, toy and paper noise at 5–30 dB SNR;
* **session life**: silent play stretches of 20–90 s with only toy and paper
  sounds, children who say little in every condition, a parent in about a
  third of the sessions, backchannels and cross-talk over other speakers.

The folder format is that of :func:`models.simulate.simulate_session`
(``recording.wav``, ``metadata.json``, ``ruptures.csv``, ``reference.rttm``),
so :mod:`models.dataset` reads both. Like the first generator, this one
teaches the markers' directions, not the look of real ruptures; neither
replaces validation on real, annotated sessions.

References
----------
1. Eubanks, C. F., Muran, J. C., & Safran, J. D. (2015). Rupture Resolution
   Rating System (3RS): Manual. Mount Sinai-Beth Israel Medical Center.
2. Heldner, M., & Edlund, J. (2010). Pauses, gaps and overlaps in
   conversations. Journal of Phonetics, 38(4), 555–568.
3. Scheibler, R., Bezzam, E., & Dokmanić, I. (2018). Pyroomacoustics: A Python
   package for audio room simulations and array processing algorithms.
   Proc. IEEE ICASSP, 351–355.
4. Allen, J. B., & Berkley, D. A. (1979). Image method for efficiently
   simulating small-room acoustics. JASA, 65(4), 943–950.
"""

from __future__ import annotations

import csv
import functools
import json
import subprocess
import dataclasses
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from pipeline.types import RUPTURE_LABELS

GENERATOR = "rooms"
SAMPLE_RATE_HZ = 16000
ROOT = Path(__file__).resolve().parent.parent  # the repository: the real speech is read from its test data
LEVEL_RANGE_DBFS = (-45.0, -15.0)  # active speech level of the recording
SNR_RANGE_DB = (5.0, 30.0)
RT60_RANGE_S = (0.2, 0.8)
EPISODE_RANGE_S = (30.0, 150.0)
PLAY_RANGE_S = (20.0, 90.0)
NOISE_TYPES = ("babble", "fan", "street", "toys", "paper")
_REF_LEVEL_DBFS = -26.0  # every dry utterance is brought to this active level before voice effort and the room
_ISM_ORDER = 12  # image-source order; later reflections are the synthetic tail (see _room_responses)

# --------------------------------------------------------------------------------------------------------------
# Phrase banks, written for this generator. "{topic}" is a topic; "{pron}" / "{Pron}" the client (he/she).
# Nothing here is a sentence of models/simulate.py's _PHRASES (tests/test_simulate_rooms.py checks it).
# --------------------------------------------------------------------------------------------------------------
_BANK: dict[str, dict[str, list[str]]] = {
    "nl": {
        "topics": ["de gymles", "je broertje", "de nieuwe klas", "het schoolkamp", "je hond", "oma", "de schoolbus",
                   "je feestje", "de muziekles", "het schoolplein", "je beste vriendin", "die ruzie", "je telefoon",
                   "het huiswerk", "de scouting", "judo", "de verhuizing", "het logeren bij papa", "de toets",
                   "de pauze"],
        "t_question": ["Wat is er sinds vorige week gebeurd met {topic}?", "Vertel eens, hoe ging dat met {topic}?",
                       "Wat vond jij het lastigste aan {topic}?", "Wie helpt jou als het misgaat met {topic}?",
                       "Wat maakte dat zo vervelend?", "En wat deed jij toen?",
                       "Als je een cijfer moest geven voor {topic}, welk cijfer zou het dan zijn?",
                       "Wat zou je beste vriend daarover zeggen?", "Wanneer ging het wel goed met {topic}?",
                       "Hoe zag je dag er gisteren uit?", "Wat zou er moeten gebeuren zodat het makkelijker wordt?",
                       "Weet je nog wat we de vorige keer hebben afgesproken?",
                       "Hoe merk je in je lijf dat je zenuwachtig wordt?", "Welk deel van de dag vind je het fijnst?"],
        "t_reflect": ["Het lijkt alsof {topic} je echt bezighoudt.", "Dat was dus best een rare dag voor je.",
                      "Ik kan me voorstellen dat je daar moe van wordt.", "Wat knap dat je dat toch geprobeerd hebt.",
                      "Je hebt er duidelijk al veel over nagedacht.", "Dus eigenlijk wilde je gewoon even rust.",
                      "Zo te horen ging het deze keer anders dan anders.",
                      "Dat had ik niet verwacht, vertel gerust verder.", "Het is ook helemaal niet makkelijk, zoiets."],
        "t_play": ["Zo, die toren wordt steeds hoger.", "Welke kleur pak je nu?", "Oei, daar valt er eentje om.",
                   "Mag ik ook een blokje neerleggen?", "Wat is dat voor dier dat je daar tekent?",
                   "Die auto rijdt wel hard, zeg.", "Zullen we deze puzzel samen afmaken?",
                   "Ik zie dat je heel precies werkt."],
        "t_invite": ["Je hoeft niet meteen te antwoorden hoor.",
                     "Ik merk dat het stil wordt als we het hierover hebben.",
                     "Zullen we het even over iets anders hebben?", "Misschien kun je het ook aanwijzen of tekenen.",
                     "Ik wacht gewoon even, neem je tijd.", "Is het een moeilijke vraag?",
                     "Zeg het maar als ik te veel vraag."],
        "t_repair": ["Je bent er echt klaar mee, hè.", "Ik snap dat je hier geen zin in hebt.",
                     "Je mag boos zijn, dat is prima hier.", "Wil je dat ik even stop met vragen stellen?",
                     "Ik hoor dat dit niet helpt voor jou, wat zou wel helpen?",
                     "Misschien heb ik het verkeerd begrepen."],
        "t_limit": ["We hebben nog een kwartiertje, dan mag je gaan.", "Niet met de blokken gooien alsjeblieft.",
                    "Ga maar even rustig zitten.", "We maken eerst dit nog af.",
                    "Ik wil toch nog één ding met je bespreken."],
        "t_backchannel": ["mhm", "ja ja", "uhu", "klopt", "o ja?", "ah zo", "hmhm"],
        "c_answer": ["Nou, bij {topic} ging het eigenlijk wel goed deze keer.",
                     "Ik heb met {topic} gewoon een paar dingen gedaan, niks bijzonders.",
                     "Gisteren was er gedoe bij {topic} en toen werd ik echt boos.",
                     "Mijn juf zegt dat ik beter moet opletten, maar dat lukt niet altijd.",
                     "We gingen naar het bos en ik vond een heel grote tak.",
                     "Ik speelde met mijn neef en we bouwden een hut.",
                     "Met {topic} is het soms leuk en soms heel stom.",
                     "Rekenen vind ik stom, maar tekenen is wel leuk.",
                     "Ik was een beetje bang, maar daarna viel het mee.",
                     "Papa zei dat we zaterdag naar de dierentuin gaan.",
                     "Ik weet het niet precies meer, het was heel druk.",
                     "Ik heb gewonnen met voetballen, drie tegen twee!"],
        "c_short": ["ging wel", "gewoon leuk", "soms", "een beetje", "best wel", "niet echt", "denk het wel",
                    "vorige week"],
        "c_minimal": ["hmm", "mwa", "kweenie", "weet ik veel", "nee hoor", "jawel", "zal wel", "gaat wel", "nou nee",
                      "boeit niet"],
        "c_avoid": ["Mag ik met de auto's spelen?", "Hoe laat is het eigenlijk?", "Mijn veter zit los.",
                    "Wist je dat haaien geen botten hebben?", "Ik heb dorst.", "Waar is de rode stift?",
                    "Die lamp doet raar.", "Mag ik even naar de wc?"],
        "c_defer": ["als u dat zegt", "oké dan", "zal wel goed zijn", "u weet het vast beter", "prima hoor",
                    "ja, doe maar", "dat moet u weten"],
        "c_therapy": ["Dit praten heeft echt geen zin.", "Elke week hetzelfde, ik word er gek van.",
                      "Ik snap niet waarom ik hier moet komen.", "Die spelletjes van jou zijn voor kleine kinderen.",
                      "Het wordt er thuis heus niet beter van."],
        "c_therapist": ["Jij begrijpt er helemaal niks van.", "U luistert nooit echt naar mij.",
                        "Jij vraagt altijd dezelfde domme dingen.", "U zegt maar wat.",
                        "Je doet net alsof je het snapt."],
        "c_reject": ["Nee, dat ga ik echt niet doen.", "Ik doe die opdracht niet.", "Daar heb ik helemaal geen zin in.",
                     "Ik zeg er lekker niks over.", "Hou maar op, ik doe niet mee."],
        "c_pressure": ["Hoe lang duurt dit nog?", "Mag ik nu eindelijk naar huis?", "Ben je nou klaar met die vragen?",
                       "Schiet nou eens op.", "Ik wil nu stoppen."],
        "c_play": ["Kijk, hij kan vliegen!", "Deze is van mij.", "Nog eentje erbovenop.", "Oeps, gevallen.",
                   "Ik maak een kasteel.", "Waar is het andere poppetje?"],
        "c_excited": ["En toen scoorde ik gewoon, echt waar!", "Het was zo grappig, iedereen lag dubbel!",
                      "We hebben een puppy en hij heet Bram!"],
        "p_remark": ["Thuis is {pron} de laatste tijd ook erg stil.", "{Pron} slaapt al een paar weken slecht.",
                     "De mentor belde vorige week nog.", "Het gaat met het huiswerk wat beter, geloof ik.",
                     "We merken thuis dat de ochtenden lastig zijn."],
        "p_answer": ["{Pron} bedoelt dat het op school niet zo lekker loopt.", "Ik denk dat {pron} het spannend vond.",
                     "Dat ging eigenlijk best goed, toch?"],
        "p_interrupt": ["Hé, niet zo brutaal!", "Zo praat je niet, hoor.", "Doe eens normaal, joh.",
                        "Nou moet je echt ophouden.", "Luister nou even naar wat er gevraagd wordt."],
    },
    "en": {
        "topics": ["gym class", "your little brother", "the new class", "school camp", "your dog", "grandma",
                   "the school bus", "your birthday", "music lessons", "the playground", "your best friend",
                   "that fight", "your phone", "homework", "scouts", "karate", "the move", "staying at dad's",
                   "the test", "break time"],
        "t_question": ["What has happened with {topic} since last week?", "Tell me, how did {topic} go?",
                       "What was the hardest part of {topic} for you?", "Who helps you when {topic} goes wrong?",
                       "What made it so annoying?", "And what did you do then?",
                       "If you gave {topic} a mark out of ten, what would it be?",
                       "What would your best friend say about that?", "When did {topic} go well?",
                       "What did your day look like yesterday?", "What would need to happen to make it easier?",
                       "Do you remember what we agreed last time?", "How does your body tell you that you're nervous?",
                       "Which part of the day do you like best?"],
        "t_reflect": ["It sounds like {topic} is really on your mind.", "So that was quite a strange day for you.",
                      "I can imagine that wears you out.", "Good on you for trying it anyway.",
                      "You've clearly thought about this a lot already.", "So really you just wanted some peace.",
                      "It sounds like this time was different from usual.",
                      "I didn't expect that, do go on.", "That's not easy at all, something like that."],
        "t_play": ["Wow, that tower keeps getting taller.", "Which colour are you taking now?",
                   "Oops, there goes one.", "Can I put a block down too?", "What animal are you drawing there?",
                   "That car is going really fast.", "Shall we finish this puzzle together?",
                   "I can see you're being really careful."],
        "t_invite": ["You don't have to answer straight away.", "I notice it gets quiet when we talk about this.",
                     "Shall we talk about something else for a bit?", "Maybe you could point to it or draw it.",
                     "I'll just wait a moment, take your time.", "Is that a hard question?",
                     "Tell me if I'm asking too much."],
        "t_repair": ["You've really had enough, haven't you.", "I get that you don't feel like doing this.",
                     "You're allowed to be angry in here.", "Do you want me to stop asking questions for a bit?",
                     "I hear this isn't helping you, what would help?", "Maybe I got that wrong."],
        "t_limit": ["We've got fifteen more minutes, then you can go.", "Please don't throw the blocks.",
                    "Come and sit down for a moment.", "Let's finish this one first.",
                    "There's still one thing I'd like to talk about."],
        "t_backchannel": ["mhm", "right", "I see", "oh yeah?", "ah", "mm-hm"],
        "c_answer": ["Well, {topic} actually went okay this time.",
                     "I just did a few things with {topic}, nothing special.",
                     "Yesterday there was trouble at {topic} and I got really angry.",
                     "My teacher says I have to pay more attention, but I can't always.",
                     "We went to the woods and I found a massive stick.", "I played with my cousin and we built a den.",
                     "{topic} is sometimes fun and sometimes really stupid.", "Maths is stupid but drawing is fun.",
                     "I was a bit scared but then it was alright.", "Dad said we're going to the zoo on Saturday.",
                     "I don't remember exactly, it was really busy.", "I won at football, three two!"],
        "c_short": ["it was alright", "pretty good", "sometimes", "a little", "quite a lot", "not much", "I think so",
                    "last week"],
        "c_minimal": ["hmm", "meh", "I dunno", "nah", "guess so", "nope", "kind of", "no clue", "suppose so"],
        "c_avoid": ["Can I play with the cars?", "What time is it?", "My shoelace is undone.",
                    "Did you know sharks don't have bones?", "I'm thirsty.", "Where's the red pen?",
                    "That light is flickering.", "Can I go to the toilet?"],
        "c_defer": ["if you say so", "alright then", "I suppose that's fine", "you probably know best", "sure, fine",
                    "yeah, go on then", "up to you"],
        "c_therapy": ["Talking about this is pointless.", "Every week the same thing, it drives me mad.",
                      "I don't get why I have to come here.", "Your games are for little kids.",
                      "It's not making anything better at home."],
        "c_therapist": ["You don't get it at all.", "You never actually listen to me.",
                        "You always ask the same dumb questions.", "You're just making stuff up.",
                        "You're pretending you understand."],
        "c_reject": ["No, I'm really not doing that.", "I'm not doing that exercise.",
                     "I don't want to do that at all.",
                     "I'm not saying anything about it.", "Just stop, I'm not joining in."],
        "c_pressure": ["How much longer is this?", "Can I finally go home now?", "Are you done with the questions yet?",
                       "Hurry up.", "I want to stop now."],
        "c_play": ["Look, it can fly!", "This one's mine.", "One more on top.", "Oops, it fell.",
                   "I'm making a castle.",
                   "Where's the other little man?"],
        "c_excited": ["And then I just scored, for real!", "It was so funny, everyone was crying laughing!",
                      "We got a puppy and he's called Max!"],
        "p_remark": ["At home {pron}'s been very quiet lately too.", "{Pron} hasn't slept well for a few weeks.",
                     "The school rang us again last week.", "Homework is going a bit better, I think.",
                     "We notice the mornings are hard at home."],
        "p_answer": ["{Pron} means school isn't going so well.", "I think {pron} found it scary.",
                     "That went quite well actually, didn't it?"],
        "p_interrupt": ["Hey, don't be so rude!", "You don't talk like that.", "Behave yourself.",
                        "That's enough now.", "Just listen to the question."],
    },
}
_THERAPIST_SEXES = ("f", "f", "m", "f", "m")  # five therapists per language; clients are spread over them
_SALT = {"nl": 0, "en": 1}  # part of every seed sequence: Dutch and English sessions of one seed differ
_PRONOUNS = {"nl": {"m": "hij", "f": "ze"}, "en": {"m": "he", "f": "she"}}
# Which banks carry the rupture's words: these stay synthetic most of the time (see Speaker.real_share).
_LEXICAL = {"c_minimal", "c_avoid", "c_defer", "c_therapy", "c_therapist", "c_reject", "c_pressure", "p_interrupt"}
_WITHDRAWAL_MARKERS = {"avoid": "avoidant storytelling and/or shifting topic", "defer": "deferential and appeasing",
                       "minimal": "minimal response", "silent": "minimal response"}
_CONFRONTATION_MARKERS = {"c_therapy": "complaints/concerns about the activities of therapy",
                          "c_therapist": "complaints/concerns about the therapist",
                          "c_reject": "patient rejects therapist intervention",
                          "c_pressure": "efforts to control/pressure the therapist"}

# --------------------------------------------------------------------------------------------------------------
# Voices
# --------------------------------------------------------------------------------------------------------------
_ESPEAK_LANGUAGES = {"nl": ["nl"], "en": ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-us-nyc", "en-029",
                                          "en-gb-x-gbclan"]}
# espeak-ng variants by the voice they give (median F0 measured on a Dutch sentence at the pitches used here:
# "f" 160–300 Hz, "m" 70–110 Hz, "child" 250–450 Hz after the formant shift)
_VARIANTS = {"f": ["Alicia", "Annie", "belinda", "linda", "steph", "shelby", "aunty"],
             "m": ["adam", "Andy", "benjamin", "caleb", "david", "edward", "john", "paul", "rob", "robert", "travis",
                   "victor", "norbert", "klatt", "klatt2", "klatt3", "klatt5"],
             "child": ["anika", "Annie", "Alicia", "shelby", "steph3", "zac"]}


@dataclass(frozen=True)
class RealSource:
    """One real speaker in the shipped test data.

    ``files`` are globs relative to the repository root; with ``rttm`` only the
    stretches where ``speaker`` talks alone are used (the file stem is the RTTM
    uri).
    """

    key: str
    language: str  # "nl" or "en"
    sex: str  # "f", "m" or "child"
    files: tuple[str, ...]
    rttm: str | None = None
    speaker: str | None = None
    weight: float = 1.0  # how often it is chosen for a role: about the square root of its minutes of speech


REAL_SOURCES: tuple[RealSource, ...] = (
    RealSource("nathalie", "nl", "f", ("tests/data/dutch/nathalie/*.flac", "tests/data/speech_pool/nathalie/*.flac"),
               weight=1.0),
    RealSource("rdh", "nl", "m", ("tests/data/dutch/rdh/*.flac",), weight=0.5),
    RealSource("css10", "nl", "m", ("tests/data/speech_pool/css10/*.flac",), weight=0.4),
    RealSource("porcupine", "nl", "f", ("tests/data/speech_pool/porcupine/*.flac",), weight=0.3),  # single words
    RealSource("call-90", "en", "f", ("sample_audio/sample.wav",), "sample_audio/sample.rttm", "speaker90", 0.6),
    RealSource("call-91", "en", "f", ("sample_audio/sample.wav",), "sample_audio/sample.rttm", "speaker91", 0.6),
    RealSource("ami-mee009", "en", "m", ("tests/data/ami/dev00.flac", "tests/data/ami/dev01.flac"),
               "tests/data/ami/dev.rttm", "MEE009", weight=0.6),
    RealSource("ami-mee012", "en", "m", ("tests/data/ami/dev00.flac", "tests/data/ami/dev01.flac"),
               "tests/data/ami/dev.rttm", "MEE012", weight=0.6),
    RealSource("ami-feo070", "en", "f", ("tests/data/ami/tst00.flac",), "tests/data/ami/tst.rttm", "FEO070", 0.2),
    RealSource("ami-feo072", "en", "f", ("tests/data/ami/tst00.flac",), "tests/data/ami/tst.rttm", "FEO072", 0.3),
    RealSource("ami-mee073", "en", "m", ("tests/data/ami/tst00.flac",), "tests/data/ami/tst.rttm", "MEE073", 0.2),
    RealSource("ami-meo069", "en", "m", ("tests/data/speech_pool/ami/trn03.flac",),
               "tests/data/speech_pool/ami/trn.rttm", "MÉO069", 0.6),
    RealSource("ami-fee078", "en", "f", ("tests/data/speech_pool/ami/trn05.flac",),
               "tests/data/speech_pool/ami/trn.rttm", "FEE078", 0.6),
    RealSource("jfk", "en", "m", ("tests/data/speech_pool/jfk/*.flac",), weight=0.4),
    RealSource("so-1030", "en", "m", ("tests/data/speechocean762/01030*.wav",), weight=0.3),
    RealSource("so-0003", "en", "child", ("tests/data/speechocean762/00003*.wav",)),
    RealSource("so-1046", "en", "child", ("tests/data/speechocean762/01046*.wav",)),
)


@dataclass(frozen=True)
class TtsVoice:
    """espeak-ng settings of one synthetic voice."""

    voice: str  # espeak-ng voice and variant, e.g. "en-gb-scotland+klatt3"
    pitch: int  # espeak-ng -p, 0–99
    rate_wpm: int  # speaking rate the listener hears, words per minute
    formant_ratio: float  # > 1 raises pitch and formants together (a shorter vocal tract: children)
    word_gap_10ms: int  # espeak-ng -g, extra pause between words in units of 10 ms


@dataclass(frozen=True)
class Speaker:
    """One participant: a synthetic voice, and optionally a real speaker for part of the utterances."""

    role: str
    sex: str  # "f" or "m"
    tts: TtsVoice
    real: str | None  # RealSource.key
    real_share: float  # share of non-lexical utterances spoken by the real speaker
    real_shift_st: float  # pitch and formant shift of the real speech, semitones (children from adult speech)
    effort_db: float  # habitual vocal effort relative to the others
    gap_median_s: float  # median gap before this speaker takes the floor


@dataclass(frozen=True)
class _Style:
    gain_db: float = 0.0
    pitch: int = 0  # added to the voice's espeak-ng pitch
    rate: float = 1.0
    tilt_db: float = 0.0  # level change above about 1 kHz: raised voices are brighter, soft ones duller


_CALM = _Style()


@dataclass
class _Utt:
    role: str
    start: float
    samples: np.ndarray  # dry, at the speaker's level
    position: str  # which source position in the room
    source: str  # "tts" or "real"

    @property
    def end(self) -> float:
        return self.start + self.samples.size / SAMPLE_RATE_HZ


# --------------------------------------------------------------------------------------------------------------
# Small signal helpers
# --------------------------------------------------------------------------------------------------------------
def _frames_db(x: np.ndarray, frame: int = 160) -> np.ndarray:
    """Level of consecutive 10 ms frames, dBFS."""
    n = x.size // frame
    if n == 0:
        return np.full(1, -120.0)
    e = np.mean(x[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1)
    return 10 * np.log10(e + 1e-12)


def _active_rms(x: np.ndarray) -> float:
    """RMS over the frames within 35 dB of the loudest 10 ms frame (the speech, not its pauses)."""
    db = _frames_db(x)
    keep = db > db.max() - 35
    frames = x[: db.size * 160].reshape(db.size, 160)[keep] if x.size >= 160 else x[None, :]
    return float(np.sqrt(np.mean(frames.astype(np.float64) ** 2)) + 1e-12)


def _trim(x: np.ndarray, *, below_peak_db: float = 35.0, pad: int = 320) -> np.ndarray:
    """Cut leading and trailing frames more than ``below_peak_db`` under the loudest, keeping 20 ms."""
    db = _frames_db(x)
    on = np.flatnonzero(db > db.max() - below_peak_db)
    if on.size == 0:
        return x
    return x[max(0, on[0] * 160 - pad): min(x.size, (on[-1] + 1) * 160 + pad)]


def _fade(x: np.ndarray, n: int = 160) -> np.ndarray:
    """Raised-cosine fade in and out over ``n`` samples (10 ms), so cuts do not click."""
    x = np.array(x, dtype=np.float32)
    n = min(n, x.size // 2)
    if n > 0:
        w = (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n))).astype(np.float32)
        x[:n] *= w
        x[-n:] *= w[::-1]
    return x


def _tilt(x: np.ndarray, db: float) -> np.ndarray:
    """Add ``db`` dB above about 1 kHz (first-order high-pass branch added to the signal)."""
    if abs(db) < 0.1:
        return x
    from scipy.signal import butter, sosfilt

    hp = sosfilt(butter(1, 1000, "highpass", fs=SAMPLE_RATE_HZ, output="sos"), x)
    return (x + (10 ** (db / 20) - 1) * hp).astype(np.float32)


def _band(x: np.ndarray, lo_hz: float | None, hi_hz: float | None, order: int = 2) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    if lo_hz and hi_hz:
        sos = butter(order, [lo_hz, hi_hz], "bandpass", fs=SAMPLE_RATE_HZ, output="sos")
    elif lo_hz:
        sos = butter(order, lo_hz, "highpass", fs=SAMPLE_RATE_HZ, output="sos")
    else:
        sos = butter(order, hi_hz, "lowpass", fs=SAMPLE_RATE_HZ, output="sos")
    return sosfilt(sos, x).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)) + 1e-12)


def _shift(x: np.ndarray, semitones: float) -> np.ndarray:
    """Raise pitch and formants together by ``semitones``, keeping the duration (librosa's phase vocoder)."""
    if abs(semitones) < 0.25:
        return x
    import librosa

    return librosa.effects.pitch_shift(x.astype(np.float32), sr=SAMPLE_RATE_HZ, n_steps=float(semitones)).astype(
        np.float32)


# --------------------------------------------------------------------------------------------------------------
# Real speech: utterance-sized stretches
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Region:
    samples: np.ndarray
    cuts: np.ndarray  # sample indices of pauses (and both ends) where a stretch may start or end


def _regions_of(x: np.ndarray) -> _Region:
    """A stretch of one speaker with the pauses (≥ 30 ms, 28 dB under its loud frames) as cut points."""
    db = _frames_db(x)
    quiet = db < np.percentile(db, 95) - 28
    cuts = [0]
    run = 0
    for i, q in enumerate(quiet):
        run = run + 1 if q else 0
        if run == 3:
            cuts.append((i - 1) * 160)
    cuts.append(x.size)
    return _Region(x.astype(np.float32), np.unique(np.array(cuts, dtype=np.int64)))


@functools.lru_cache(maxsize=4)
def _real_pool(language: str, root: str) -> dict[str, tuple[_Region, ...]]:
    """Single-speaker regions of every real source of ``language`` (cached per process)."""
    from pipeline.audio import decode
    from pipeline.rttm import read_rttm

    base = Path(root)
    pool: dict[str, tuple[_Region, ...]] = {}
    for src in REAL_SOURCES:
        if src.language != language:
            continue
        files = sorted(p for pattern in src.files for p in base.glob(pattern))
        if not files:
            raise RuntimeError(f"{base / src.files[0]}: real speech for the rooms generator not found; it ships "
                               "with the repository (tests/data, sample_audio): run from a checkout")
        turns = read_rttm(base / src.rttm) if src.rttm else {}
        regions = []
        for f in files:
            x = decode(f).samples.astype(np.float32)
            if not src.rttm:
                regions.append(_regions_of(_trim(x)))
                continue
            mine = [t for t in turns.get(f.stem, ()) if t.speaker == src.speaker]
            others = [t for t in turns.get(f.stem, ()) if t.speaker != src.speaker]
            for t in mine:  # the parts of this speaker's turns where nobody else talks (0.15 s margin)
                spans = [(t.start, t.end)]
                for o in others:
                    spans = [piece for a, b in spans
                             for piece in ((a, min(b, o.start - 0.15)), (max(a, o.end + 0.15), b))
                             if piece[1] - piece[0] > 0]
                for a, b in spans:
                    if b - a >= 0.4:
                        regions.append(_regions_of(x[int(a * SAMPLE_RATE_HZ):int(b * SAMPLE_RATE_HZ)]))
        pool[src.key] = tuple(regions)
    return pool


def _take_real(rng: np.random.Generator, regions: tuple[_Region, ...], target_s: float) -> np.ndarray:
    """A stretch of 0.3 s to ``target_s`` (≤ 6 s) cut at pauses, trimmed, at the reference level."""
    target = int(min(max(target_s, 0.3), 6.0) * SAMPLE_RATE_HZ)
    shortest = int(0.3 * SAMPLE_RATE_HZ)
    for _ in range(12):
        r = regions[int(rng.integers(len(regions)))]
        starts = r.cuts[:-1]
        a = int(starts[int(rng.integers(starts.size))])
        ends = r.cuts[(r.cuts >= a + shortest) & (r.cuts <= a + target)]
        if ends.size:
            b = int(ends.max() if rng.random() < 0.7 else ends[int(rng.integers(ends.size))])
            seg = _trim(r.samples[a:b])
            if seg.size >= shortest:
                break
    else:  # no pause at a fitting place: cut inside speech, faded
        r = max(regions, key=lambda g: g.samples.size)
        a = int(rng.integers(0, max(1, r.samples.size - target)))
        seg = _trim(r.samples[a:a + target])
    seg = _fade(seg)
    return (seg * 10 ** (_REF_LEVEL_DBFS / 20) / _active_rms(seg)).astype(np.float32)


# --------------------------------------------------------------------------------------------------------------
# Synthetic speech
# --------------------------------------------------------------------------------------------------------------
def _espeak(text: str, voice: TtsVoice, style: _Style) -> np.ndarray:
    """espeak-ng speech of ``text`` at 16 kHz, trimmed, at the reference level."""
    from scipy.signal import resample_poly

    pitch = int(np.clip(voice.pitch + style.pitch, 0, 99))
    rate = int(np.clip(round(voice.rate_wpm * style.rate / voice.formant_ratio), 80, 450))
    out = subprocess.run(["espeak-ng", "-v", voice.voice, "-p", str(pitch), "-s", str(rate), "-g",
                          str(voice.word_gap_10ms), "--stdout", text], check=True, capture_output=True).stdout
    rate_hz = int.from_bytes(out[24:28], "little")
    x = np.frombuffer(out[44:44 + (len(out) - 44) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    # resampling to 16 kHz from a rate taken as ``formant_ratio`` times too high plays the voice faster and
    # higher; a ratio of small integers (within 0.3 %) keeps resample_poly's filter short
    ratio = Fraction(SAMPLE_RATE_HZ / (rate_hz * voice.formant_ratio)).limit_denominator(500)
    x = resample_poly(x, ratio.numerator, ratio.denominator).astype(np.float32)
    x = _fade(_trim(x))
    return (x * 10 ** (_REF_LEVEL_DBFS / 20) / _active_rms(x)).astype(np.float32)


def espeak_available() -> bool:
    """Whether the ``espeak-ng`` program is on the PATH."""
    import shutil

    return shutil.which("espeak-ng") is not None


# --------------------------------------------------------------------------------------------------------------
# Who is in the room
# --------------------------------------------------------------------------------------------------------------
def _tts_voice(rng: np.random.Generator, language: str, kind: str) -> TtsVoice:
    """A synthetic voice for ``kind``: "f", "m" (adults), "child", "teen-f", "teen-m" (voice broken) or
    "teen-m-young"."""
    accent = str(rng.choice(_ESPEAK_LANGUAGES[language]))
    if kind == "child":
        return TtsVoice(f"{accent}+{rng.choice(_VARIANTS['child'])}", int(rng.integers(60, 100)),
                        int(rng.integers(120, 176)), float(rng.uniform(1.08, 1.22)), int(rng.integers(0, 4)))
    if kind == "teen-m-young":
        return TtsVoice(f"{accent}+{rng.choice(_VARIANTS['child'])}", int(rng.integers(30, 60)),
                        int(rng.integers(140, 211)), float(rng.uniform(1.0, 1.08)), int(rng.integers(0, 3)))
    if kind == "teen-f":
        return TtsVoice(f"{accent}+{rng.choice(_VARIANTS['f'])}", int(rng.integers(50, 85)),
                        int(rng.integers(150, 221)), float(rng.uniform(1.0, 1.08)), int(rng.integers(0, 3)))
    if kind == "teen-m":
        return TtsVoice(f"{accent}+{rng.choice(_VARIANTS['m'])}", int(rng.integers(45, 75)),
                        int(rng.integers(150, 221)), float(rng.uniform(1.0, 1.05)), int(rng.integers(0, 3)))
    pitch = rng.integers(35, 66) if kind == "f" else rng.integers(28, 62)
    return TtsVoice(f"{accent}+{rng.choice(_VARIANTS[kind])}", int(pitch), int(rng.integers(130, 206)),
                    1.0, int(rng.integers(0, 3)))


def _pick_real(rng: np.random.Generator, language: str, sexes: tuple[str, ...], taken: set[str]) -> str | None:
    options = [s for s in REAL_SOURCES if s.language == language and s.sex in sexes and s.key not in taken]
    if not options:
        return None
    w = np.array([s.weight for s in options])
    return options[int(rng.choice(len(options), p=w / w.sum()))].key


@dataclass(frozen=True)
class _Client:
    age: int
    sex: str
    talkativeness: float  # 0–1: how much this client says in ordinary talk
    parent_propensity: float  # chance that a parent joins a session
    therapist_index: int


def _client(client_seed: int, language: str) -> _Client:
    rng = np.random.default_rng([client_seed, 7011, _SALT[language]])
    age = int(rng.choice(np.arange(5, 18), p=np.array([3, 5, 7, 8, 8, 8, 7, 6, 5, 4, 4, 3, 2]) / 70))
    return _Client(age, "f" if rng.random() < 0.5 else "m", float(rng.beta(1.3, 1.6)), float(rng.beta(1.0, 2.0)),
                   int(client_seed % 5))


def _speakers(language: str, client_seed: int, parent: bool, real_voices: bool = False) -> dict[str, Speaker]:
    """Therapist (one of five per language), client and, when present, parent.

    With ``real_voices``, a speaker without a real voice gets one (a child's where the language has one, else one of
    the speaker's sex, else any left), and every speaker speaks every utterance in it.
    """
    c = _client(client_seed, language)
    trng = np.random.default_rng([c.therapist_index, 4242, _SALT[language]])
    t_sex = _THERAPIST_SEXES[c.therapist_index]
    t_real = _pick_real(trng, language, (t_sex,), set()) if trng.random() < 0.7 else None
    speakers = {"therapist": Speaker("therapist", t_sex, _tts_voice(trng, language, t_sex), t_real,
                                     float(trng.uniform(0.2, 0.7)) if t_real else 0.0, 0.0,
                                     float(trng.uniform(-2, 2)), float(trng.uniform(0.18, 0.3)))}
    crng = np.random.default_rng([client_seed, 7012, _SALT[language]])
    taken = {t_real} if t_real else set()
    child = c.age < 12
    if child:
        kind, shift = "child", float(crng.uniform(4.0, 7.0))
        real = _pick_real(crng, language, ("child",), taken) if language == "en" and crng.random() < 0.6 else None
        if real is not None:
            shift = float(crng.uniform(-0.5, 1.0))  # already a child's voice
        elif crng.random() < 0.6:
            real = _pick_real(crng, language, ("f",), taken)
    else:
        broken = c.sex == "m" and c.age >= 14
        kind = "teen-f" if c.sex == "f" else "teen-m" if broken else "teen-m-young"
        real = _pick_real(crng, language, ("m",) if broken else ("f",), taken) if crng.random() < 0.6 else None
        shift = float(crng.uniform(0.5, 2.5) if broken else crng.uniform(1.0, 3.5))
    speakers["client"] = Speaker("client", c.sex, _tts_voice(crng, language, kind), real,
                                 float(crng.uniform(0.1, 0.5)) if real else 0.0, shift if real else 0.0,
                                 float(crng.uniform(-4, 2)),
                                 float(crng.uniform(0.3, 0.6) if child else crng.uniform(0.22, 0.4)))
    if parent:
        prng = np.random.default_rng([client_seed, 7013, _SALT[language]])
        p_sex = "f" if prng.random() < 0.6 else "m"
        p_real = _pick_real(prng, language, (p_sex,), taken | ({real} if real else set())) if prng.random() < 0.6 \
            else None
        speakers["parent"] = Speaker("parent", p_sex, _tts_voice(prng, language, p_sex), p_real,
                                     float(prng.uniform(0.2, 0.6)) if p_real else 0.0, 0.0,
                                     float(prng.uniform(-2, 3)), float(prng.uniform(0.15, 0.3)))
    if real_voices:
        rrng = np.random.default_rng([client_seed, 7014, _SALT[language]])
        taken = {s.real for s in speakers.values() if s.real}
        for role, s in list(speakers.items()):
            real = s.real
            for sexes in ((("child",) if role == "client" and child else ()), (s.sex,), ("f", "m", "child")):
                if real is None and sexes:
                    real = _pick_real(rrng, language, sexes, taken)
            if real is None:
                raise RuntimeError(f"real_voices: no real voice left in {language} for the {role}")
            taken.add(real)
            speakers[role] = dataclasses.replace(s, real=real, real_share=1.0)
    return speakers


# --------------------------------------------------------------------------------------------------------------
# The session plan: which stretches, how long, in which order
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SessionPlan:
    """What a seed asks for, before anything is rendered.

    ``blocks`` are ``(kind, seconds)`` in order: ``"ordinary"``, ``"play"``
    (silent play), ``"withdrawal"`` or ``"confrontation"``.
    """

    blocks: tuple[tuple[str, float], ...]
    parent: bool

    def seconds(self, kind: str) -> list[float]:
        """Lengths of the blocks of one kind, in plan order.

        Parameters
        ----------
        kind : str
            ``"ordinary"``, ``"play"``, ``"withdrawal"`` or
            ``"confrontation"``.

        Returns
        -------
        list of float
            Seconds of each such block; empty when the plan has none.
        """
        return [s for k, s in self.blocks if k == kind]


def session_plan(*, seed: int, language: str, minutes: float, client_seed: int | None = None) -> SessionPlan:
    """The blocks and parent presence a session of ``seed`` will have (cheap: nothing is rendered).

    Each rupture type gets 0, 1 or 2 episodes (probabilities 0.3, 0.5, 0.2) of
    30–150 s, together at most 55 % of the session (shorter sessions get fewer
    and shorter episodes); silent play stretches of 20–90 s come about once per
    5 minutes; ordinary talk fills the rest, at least 8 s between blocks and
    an opening of at least 15 s.

    Parameters
    ----------
    seed : int
    language : {"nl", "en"}
    minutes : float > 0
        Planned session length in minutes.
    client_seed : int, optional
        Default ``seed``.

    Returns
    -------
    SessionPlan

    Raises
    ------
    ValueError
        Unknown language, ``minutes`` not positive, or a negative seed.
    """
    client_seed = seed if client_seed is None else client_seed
    _check_args(language, minutes, need_espeak=False, seeds=(("seed", seed), ("client_seed", client_seed)))
    rng = np.random.default_rng([seed, client_seed, 7021, _SALT[language]])
    total = minutes * 60.0
    parent = bool(rng.random() < 0.35 * (0.5 + _client(client_seed, language).parent_propensity * 1.5))
    kinds = [k for k in RUPTURE_LABELS for _ in range(int(rng.choice([0, 1, 2], p=[0.3, 0.5, 0.2])))]
    kinds = [str(k) for k in rng.permutation(kinds)] if kinds else []
    lengths = rng.uniform(*EPISODE_RANGE_S, size=len(kinds))
    budget = 0.55 * total
    floor_s = min(EPISODE_RANGE_S[0], 0.45 * total)
    while kinds and floor_s * len(kinds) > budget:
        kinds.pop()
        lengths = lengths[:-1]
    if kinds and lengths.sum() > budget:
        lengths = np.maximum(floor_s, lengths * budget / lengths.sum())
    lengths = np.minimum(lengths, np.maximum(floor_s, 0.45 * total))
    play = []
    for _ in range(int(rng.poisson(total / 300.0))):
        s = float(rng.uniform(*PLAY_RANGE_S))
        if total - lengths.sum() - sum(play) - s >= 0.3 * total:
            play.append(s)
    blocks = [(k, float(s)) for k, s in zip(kinds, lengths)] + [("play", s) for s in play]
    order = rng.permutation(len(blocks)) if blocks else []
    blocks = [blocks[i] for i in order]
    ordinary = max(total - sum(s for _, s in blocks), 8.0 * (len(blocks) + 1))
    parts = rng.dirichlet(np.full(len(blocks) + 1, 2.0)) * ordinary
    parts = np.maximum(parts, 8.0)
    parts[0] = max(parts[0], min(15.0, ordinary / 2))
    out = [("ordinary", float(parts[0]))]
    for (k, s), o in zip(blocks, parts[1:]):
        out += [(k, s), ("ordinary", float(o))]
    return SessionPlan(tuple(out), parent)


# --------------------------------------------------------------------------------------------------------------
# The conversation
# --------------------------------------------------------------------------------------------------------------
class _Talk:
    """Builds the utterance timeline: who says what, when, in which voice."""

    def __init__(self, rng: np.random.Generator, language: str, speakers: dict[str, Speaker], client: _Client,
                 pool: dict[str, tuple[_Region, ...]], *, real_voices: bool = False) -> None:
        self.rng, self.lang, self.speakers, self.client, self.pool = rng, language, speakers, client, pool
        self.real_voices = real_voices  # every utterance in the speaker's real voice, the rupture's words too
        self.bank = _BANK[language]
        self.now = float(rng.uniform(0.8, 3.0))  # time at which the floor is free
        self.utts: list[_Utt] = []
        self.interruptions: list[dict] = []
        self.silences: list[tuple[float, float]] = []  # pauses inside talk: (start_s, end_s)
        self.play_spans: list[tuple[float, float]] = []  # silent play stretches: (start_s, end_s)
        self.topic = self._choice(self.bank["topics"])
        self.client_position = "client"

    # choices and words ----------------------------------------------------------------------------------------
    def _choice(self, items):
        return items[int(self.rng.integers(len(items)))]

    def _line(self, key: str) -> str:
        pron = _PRONOUNS[self.lang][self.client.sex]
        text = self._choice(self.bank[key]).replace("{topic}", self.topic)
        text = text.replace("{pron}", pron).replace("{Pron}", pron.capitalize())
        return text[0].upper() + text[1:] if key not in ("c_minimal", "c_short", "c_defer", "t_backchannel") else text

    def _lognormal(self, median_s: float, sigma: float, cap_s: float) -> float:
        return float(min(median_s * np.exp(sigma * self.rng.standard_normal()), cap_s))

    def fto(self, role: str, *, p_overlap: float, median_s: float | None = None) -> float:
        """Floor-transfer offset before ``role`` speaks, s: negative is an overlap, positive a gap.

        Gaps are log-normal around the speaker's median (about 0.2 s for adults,
        Heldner & Edlund 2010), overlaps log-normal around 0.25 s (at most 1 s).
        """
        if self.rng.random() < p_overlap:
            return -self._lognormal(0.25, 0.5, 1.0)
        return self._lognormal(median_s if median_s is not None else self.speakers[role].gap_median_s, 0.8, 8.0)

    # voices ---------------------------------------------------------------------------------------------------
    def render(self, role: str, key: str, style: _Style = _CALM, *, real_factor: float = 1.0) -> tuple[np.ndarray, str]:
        """Samples of one utterance of ``role`` from phrase bank ``key``: real speech or espeak-ng."""
        sp = self.speakers[role]
        text = self._line(key)
        share = 1.0 if self.real_voices else sp.real_share * real_factor * (0.15 if key in _LEXICAL else 1.0)
        if sp.real and self.rng.random() < share:
            words = len(text.split())
            x = _take_real(self.rng, self.pool[sp.real], words / (sp.tts.rate_wpm / 60.0) * self.rng.uniform(0.7, 1.3))
            x = _shift(x, sp.real_shift_st + style.pitch / 6.0)
            source = "real"
        else:
            x = _espeak(text, sp.tts, style)
            source = "tts"
        x = _tilt(x, style.tilt_db) * 10 ** ((sp.effort_db + style.gain_db) / 20)
        return x.astype(np.float32), source

    def place(self, role: str, samples: np.ndarray, source: str, start: float, position: str | None = None) -> _Utt:
        start = max(0.05, start)
        u = _Utt(role, start, samples, position or (self.client_position if role == "client" else role), source)
        self.utts.append(u)
        self.now = max(self.now, u.end)
        return u

    def say(self, role: str, key: str, style: _Style = _CALM, *, p_overlap: float = 0.2, median_s: float | None = None,
            real_factor: float = 1.0) -> _Utt:
        """``role`` takes the floor after the last utterance (gap or overlap drawn by :meth:`fto`)."""
        x, source = self.render(role, key, style, real_factor=real_factor)
        last = self.utts[-1] if self.utts else None
        start = self.now + self.fto(role, p_overlap=p_overlap if last and last.role != role else 0.0,
                                    median_s=median_s)
        if last is not None:
            start = max(start, last.start + 0.3)
        return self.place(role, x, source, start)

    def silence(self, seconds: float) -> None:
        self.silences.append((self.now, self.now + seconds))
        self.now += seconds

    def truncate(self, u: _Utt, end_s: float) -> None:
        """The speaker stops at ``end_s`` (a 30 ms fade); the reference then ends there too."""
        n = int((end_s - u.start) * SAMPLE_RATE_HZ)
        if 0.2 * SAMPLE_RATE_HZ < n < u.samples.size:
            u.samples = _fade(u.samples[:n], 480)
            self.now = max(v.end for v in self.utts)

    # ordinary talk --------------------------------------------------------------------------------------------
    def client_answer(self) -> None:
        """The client answers the way this client usually does: talkative or sparing."""
        tau = self.client.talkativeness
        p = np.array([0.15 + 0.65 * tau, 0.1 + 0.3 * (1 - tau), 0.08 + 0.3 * (1 - tau), 0.03 + 0.12 * (1 - tau)])
        what = int(self.rng.choice(4, p=p / p.sum()))
        if "parent" in self.speakers and self.rng.random() < 0.15:  # the parent answers for the child
            self.say("parent", "p_answer", p_overlap=0.3)
            return
        if what == 3:  # no answer in ordinary talk too: the child plays on
            self.silence(float(self.rng.uniform(2.0, 6.0)))
            return
        mood = self.rng.random()
        style = (_Style(float(self.rng.uniform(3, 8)), int(self.rng.integers(8, 20)),
                        float(self.rng.uniform(1.05, 1.2)), float(self.rng.uniform(1, 4))) if mood < 0.12 else
                 _Style(-float(self.rng.uniform(3, 7)), -int(self.rng.integers(0, 10)), 1.0, -2.0) if mood < 0.3 else
                 _CALM)
        key = ["c_excited" if mood < 0.12 and self.rng.random() < 0.5 else "c_answer", "c_short", "c_minimal"][what]
        u = self.say("client", key, style, p_overlap=0.15)
        if u.end - u.start > 2.0 and self.rng.random() < 0.3:  # a therapist backchannel over the answer
            x, src = self.render("therapist", "t_backchannel", _Style(-4.0))
            self.place("therapist", x, src, u.start + float(self.rng.uniform(0.4, 0.8)) * (u.end - u.start))
        elif self.rng.random() < 0.2:
            self.say("therapist", "t_backchannel", p_overlap=0.3)

    def ordinary(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end - 2.0:
            if self.rng.random() < 0.15:
                self.topic = self._choice(self.bank["topics"])
            r = self.rng.random()
            if r < 0.5:
                self.say("therapist", "t_question", p_overlap=0.2)
                self.client_answer()
            elif r < 0.68:
                self.say("therapist", "t_reflect", p_overlap=0.2)
                if self.rng.random() < 0.5:
                    self.client_answer()
            elif r < 0.86:  # play: comments, the child's own play talk, pauses with toy sounds
                if self.rng.random() < 0.5:
                    self.say("therapist", "t_play", p_overlap=0.1)
                if self.rng.random() < 0.4 + 0.4 * self.client.talkativeness:
                    self.say("client", "c_play", p_overlap=0.2)
                if self.rng.random() < 0.35:
                    self.silence(float(self.rng.uniform(2.0, 9.0)))
            elif r < 0.93 and "parent" in self.speakers:
                self.say("parent", "p_remark", p_overlap=0.25)
                if self.rng.random() < 0.7:
                    self.say("therapist", "t_reflect", p_overlap=0.2)
            else:
                self.silence(float(self.rng.uniform(1.5, 5.0)))

    def play(self, seconds: float) -> None:
        """A silent play stretch: nobody speaks; the room adds toy and paper sounds."""
        a = self.now + float(self.rng.uniform(0.3, 1.0))
        self.now = a + seconds
        self.play_spans.append((a, self.now))

    # ruptures -------------------------------------------------------------------------------------------------
    def withdrawal(self, seconds: float) -> tuple[float, float, str]:
        """Withdrawal: a per-episode mix of avoidance, deference, minimal answers and silence."""
        start = self.now + 0.05
        end = self.now + seconds
        names = ["avoid", "defer", "minimal", "silent"]
        mix = self.rng.dirichlet([2.0, 2.0, 2.5, 1.5])
        counts = dict.fromkeys(names, 0)
        quiet = _Style(-float(self.rng.uniform(3, 10)), -int(self.rng.integers(4, 15)),
                       float(self.rng.uniform(0.8, 0.95)), -float(self.rng.uniform(1, 4)))
        if self.rng.random() < 0.4:  # the child turns away, crawls under the table: farther from the microphone
            self.client_position = "client_away"
        latency = float(self.rng.uniform(1.2, 2.5))
        while self.now < end:
            self.say("therapist", "t_question" if self.rng.random() < 0.7 else "t_invite", p_overlap=0.05)
            how = names[int(self.rng.choice(4, p=mix))]
            counts[how] += 1
            if how == "silent":
                self.silence(self._lognormal(4.5, 0.4, 12.0))
                continue
            if how == "avoid":
                self.say("client", "c_avoid", quiet, median_s=0.6)
            elif how == "defer":
                self.say("client", "c_defer", quiet, median_s=latency * 0.6)
            elif self.rng.random() < 0.2 and self.speakers["client"].real:  # a mumble: a bit of real speech
                x = _take_real(self.rng, self.pool[self.speakers["client"].real], float(self.rng.uniform(0.3, 0.9)))
                x = _shift(x, self.speakers["client"].real_shift_st) * 10 ** ((quiet.gain_db - 4) / 20)
                self.place("client", x.astype(np.float32), "real", self.now + self._lognormal(latency, 0.6, 8.0))
            else:
                self.say("client", "c_minimal", quiet, median_s=latency)
            if self.rng.random() < 0.25:
                self.say("therapist", "t_reflect", p_overlap=0.0)
        self.client_position = "client"
        return start, self.now, _WITHDRAWAL_MARKERS[max(counts, key=counts.get)]

    def confrontation(self, seconds: float) -> tuple[float, float, str]:
        """Confrontation: complaints, rejection and pressure in a raised voice; interruptions; a parent steps in."""
        start = self.now + 0.05
        end = self.now + seconds
        kinds = list(_CONFRONTATION_MARKERS)
        mix = self.rng.dirichlet(np.full(len(kinds), 1.5))
        counts = dict.fromkeys(kinds, 0)
        p_interrupt = float(self.rng.uniform(0.3, 0.75))
        p_succeed = float(self.rng.uniform(0.4, 0.8))
        raised = _Style(float(self.rng.uniform(4, 10)), int(self.rng.integers(10, 26)),
                        float(self.rng.uniform(1.05, 1.3)), float(self.rng.uniform(2, 6)))
        parent = "parent" in self.speakers
        while self.now < end:
            key = self._choice(["t_question", "t_repair", "t_repair", "t_limit"])
            x, src = self.render("therapist", key)
            therapist = self.place("therapist", x, src, self.now + self.fto("therapist", p_overlap=0.1, median_s=0.2))
            kind = kinds[int(self.rng.choice(len(kinds), p=mix))]
            counts[kind] += 1
            c, csrc = self.render("client", kind, raised)
            if therapist.end - therapist.start > 1.0 and self.rng.random() < p_interrupt:
                onset = therapist.start + float(self.rng.uniform(0.35, 0.85)) * (therapist.end - therapist.start)
                onset = min(max(onset, therapist.start + 0.4), therapist.end - 0.2)
                client = self.place("client", c, csrc, onset)
                won = self.rng.random() < p_succeed
                if won:  # the therapist gives way within a second
                    self.truncate(therapist, onset + float(self.rng.uniform(0.15, 1.0)))
                elif self.rng.random() < 0.5:  # the client gives up and says it again afterwards
                    self.truncate(client, onset + float(self.rng.uniform(0.4, 1.0)))
                    self.now = max(self.now, therapist.end)
                    self.say("client", kind, raised, median_s=0.15)
                self.interruptions.append({"by": "client", "at_s": round(onset, 3), "succeeded": bool(won)})
            else:
                client = self.say("client", kind, raised, p_overlap=0.35, median_s=0.15)
            if self.rng.random() < 0.4:  # a second complaint straight after
                client = self.say("client", self._choice(kinds), raised, median_s=0.12)
            if parent and self.rng.random() < 0.2:  # the parent steps in, over the client
                x, src = self.render("parent", "p_interrupt", _Style(float(self.rng.uniform(2, 6)), 8, 1.1, 2.0))
                at = client.start + float(self.rng.uniform(0.3, 0.8)) * (client.end - client.start)
                self.place("parent", x, src, at)
                won = self.rng.random() < 0.5
                if won:
                    self.truncate(client, at + float(self.rng.uniform(0.2, 0.8)))
                self.interruptions.append({"by": "parent", "at_s": round(at, 3), "succeeded": bool(won)})
            elif self.rng.random() < 0.15:  # the therapist cuts in to calm things down
                at = client.start + float(self.rng.uniform(0.5, 0.9)) * (client.end - client.start)
                x, src = self.render("therapist", "t_repair")
                self.place("therapist", x, src, at)
                self.interruptions.append({"by": "therapist", "at_s": round(at, 3), "succeeded": False})
        return start, self.now, _CONFRONTATION_MARKERS[max(counts, key=counts.get)]


# --------------------------------------------------------------------------------------------------------------
# The room
# --------------------------------------------------------------------------------------------------------------
def _import_pyroomacoustics():
    try:
        import pyroomacoustics
    except ImportError as exc:
        raise RuntimeError("pyroomacoustics is not installed; `make install` installs it "
                           "(pip install pyroomacoustics==0.10.1)") from exc
    return pyroomacoustics


@dataclass(frozen=True)
class Room:
    """A simulated therapy room: size, reverberation and where everybody sits."""

    size_m: tuple[float, float, float]
    rt60_s: float  # target reverberation time (Sabine)
    mic_m: tuple[float, float, float]
    positions_m: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def distance_m(self, position: str) -> float:
        """Straight-line distance from a position to the microphone.

        Parameters
        ----------
        position : str
            A key of ``positions_m`` (``"therapist"``, ``"client"``,
            ``"parent"``, ...).

        Returns
        -------
        float
            Distance in metres.

        Raises
        ------
        KeyError
            The room has no such position.
        """
        return float(np.linalg.norm(np.subtract(self.positions_m[position], self.mic_m)))


def _room(rng: np.random.Generator) -> Room:
    """A room 3×3 to 6×5 m, 2.5–3.1 m high; the microphone on a table; speakers 0.5–3.5 m from it."""
    size = (float(rng.uniform(3.0, 6.0)), float(rng.uniform(3.0, 5.0)), float(rng.uniform(2.5, 3.1)))
    mic = (float(rng.uniform(0.8, size[0] - 0.8)), float(rng.uniform(0.8, size[1] - 0.8)), float(rng.uniform(0.7, 1.1)))
    ranges = {"therapist": ((0.6, 2.0), (1.1, 1.3)), "client": ((0.5, 2.8), (0.6, 1.3)),
              "client_away": ((2.0, 3.5), (0.3, 0.8)), "parent": ((1.0, 3.2), (1.1, 1.7)),
              "noise": ((1.0, 3.5), (0.2, 1.0)), "babble": ((2.5, 5.0), (1.2, 1.7))}
    positions = {}
    for name, ((d_lo, d_hi), (z_lo, z_hi)) in ranges.items():
        d, angle = float(rng.uniform(d_lo, d_hi)), float(rng.uniform(0, 2 * np.pi))
        z = float(rng.uniform(z_lo, z_hi))
        horiz = np.sqrt(max(d ** 2 - (z - mic[2]) ** 2, 0.2 ** 2))
        x = float(np.clip(mic[0] + horiz * np.cos(angle), 0.3, size[0] - 0.3))
        y = float(np.clip(mic[1] + horiz * np.sin(angle), 0.3, size[1] - 0.3))
        positions[name] = (x, y, z)
    return Room(size, float(rng.uniform(*RT60_RANGE_S)), mic, positions)


def _room_responses(room: Room, rng: np.random.Generator, names: list[str]) -> tuple[dict[str, np.ndarray], float]:
    """Impulse response from each named position to the microphone, and the measured RT60 (s).

    The image-source method (Allen & Berkley 1979) in pyroomacoustics gives the
    direct sound and early reflections up to order 12; wall absorption follows
    from the target RT60 by Sabine's formula (``inverse_sabine``). Beyond the
    time the image sources cover, the response goes on as Gaussian noise decaying
    by 60 dB per RT60, low-passed at 5 kHz and matched in energy to the image
    sources where the two meet (a stochastic late tail). pyroomacoustics' ray
    tracer would model the tail too, but its random rays are not reproducible
    from a seed.
    """
    pra = _import_pyroomacoustics()
    e_abs, max_order = pra.inverse_sabine(room.rt60_s, list(room.size_m))
    shoebox = pra.ShoeBox(list(room.size_m), fs=SAMPLE_RATE_HZ, materials=pra.Material(e_abs),
                          max_order=int(min(max_order, _ISM_ORDER)))
    for n in names:
        shoebox.add_source(list(room.positions_m[n]))
    shoebox.add_microphone(list(room.mic_m))
    shoebox.compute_rir()
    lead = pra.constants.get("frac_delay_length") // 2  # the fractional-delay filter's own delay
    t_mix = 0.8 * _ISM_ORDER * min(room.size_m) / pra.constants.get("c")  # s; image sources complete until here
    n_mix = int(t_mix * SAMPLE_RATE_HZ)
    n_out = int((t_mix + 1.2 * room.rt60_s) * SAMPLE_RATE_HZ)
    t = np.arange(n_out) / SAMPLE_RATE_HZ
    env = np.exp(-6.908 * t / room.rt60_s)  # amplitude: -60 dB after one RT60
    out, measured = {}, []
    for i, n in enumerate(names):
        h = np.zeros(n_out)
        ism = np.asarray(shoebox.rir[0][i])[lead:]
        h[:min(n_out, ism.size)] = ism[:n_out]
        w0 = max(n_mix - int(0.03 * SAMPLE_RATE_HZ), 0)
        tail = _band(rng.standard_normal(n_out), None, 5000.0, order=1) * env
        scale = np.sqrt(np.sum(h[w0:n_mix] ** 2) / max(np.sum(tail[w0:n_mix] ** 2), 1e-20))
        ramp = np.clip((np.arange(n_out) - (n_mix - 320)) / 320.0, 0.0, 1.0)  # 20 ms cross-fade into the tail
        h = h * (1 - ramp) + scale * tail * ramp
        out[n] = h.astype(np.float32)
        try:
            measured.append(float(pra.experimental.measure_rt60(h, fs=SAMPLE_RATE_HZ, decay_db=30)))
        except (ValueError, IndexError):
            pass
    return out, float(np.mean(measured)) if measured else float("nan")


# --------------------------------------------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------------------------------------------
def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE_HZ)
    spec /= np.sqrt(np.maximum(f, 20.0))
    return np.fft.irfft(spec, n).astype(np.float32)


def _noise_fan(rng: np.random.Generator, n: int) -> np.ndarray:
    """Steady broadband noise (pink, 60 Hz–4 kHz) with a mains hum and a blade tone."""
    x = _band(_pink(rng, n), 60.0, float(rng.uniform(2500, 4500)))
    x /= _rms(x)
    t = np.arange(n) / SAMPLE_RATE_HZ
    mains = 50.0
    for k, a in ((1, 0.25), (2, 0.5), (3, 0.15)):
        x += float(a * rng.uniform(0.3, 1.0)) * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 2 * np.pi))
    blade = float(rng.uniform(80, 180))
    x += 0.3 * (1 + 0.2 * np.sin(2 * np.pi * 0.3 * t)) * np.sin(2 * np.pi * blade * t)
    return x.astype(np.float32)


def _noise_street(rng: np.random.Generator, n: int) -> np.ndarray:
    """Low rumble (< 250 Hz) with passing vehicles every 8–60 s."""
    x = _band(np.cumsum(rng.standard_normal(n)) * 0.02, 20.0, 250.0)
    x /= _rms(x)
    t = 0.0
    while True:
        t += float(rng.uniform(8, 60))
        length = float(rng.uniform(3, 9))
        if t + length > n / SAMPLE_RATE_HZ:
            break
        a, m = int(t * SAMPLE_RATE_HZ), int(length * SAMPLE_RATE_HZ)
        car = _band(rng.standard_normal(m), 60.0, float(rng.uniform(800, 2500)))
        car *= np.hanning(m) ** 2 * float(rng.uniform(1.5, 4.0)) / _rms(car)
        x[a:a + m] += car
    return x


def _events(rng: np.random.Generator, n: int, per_s: float, spans: list[tuple[float, float]] | None,
            make) -> np.ndarray:
    """Short sound events at Poisson times (over the whole recording, or only inside ``spans``)."""
    x = np.zeros(n, dtype=np.float32)
    spans = spans if spans is not None else [(0.0, n / SAMPLE_RATE_HZ)]
    for a_s, b_s in spans:
        t = a_s
        while True:
            t += float(rng.exponential(1.0 / per_s))
            if t >= b_s:
                break
            ev = make(rng)
            a = int(t * SAMPLE_RATE_HZ)
            m = min(ev.size, n - a)
            if m > 0:
                x[a:a + m] += ev[:m]
    return x


def _click(rng: np.random.Generator) -> np.ndarray:
    """A toy click or a rattle (a cluster of clicks): resonant noise bursts of 5–40 ms."""
    out = np.zeros(int(0.5 * SAMPLE_RATE_HZ), dtype=np.float32)
    for k in range(1 if rng.random() < 0.6 else int(rng.integers(4, 14))):
        m = int(rng.uniform(0.005, 0.04) * SAMPLE_RATE_HZ)
        f0 = float(rng.uniform(900, 5000))
        burst = _band(rng.standard_normal(m), f0 * 0.7, min(f0 * 1.4, 7900.0)) * np.exp(-np.arange(m) / (m / 4))
        at = int(k * rng.uniform(0.015, 0.035) * SAMPLE_RATE_HZ)
        if at + m <= out.size:
            out[at:at + m] += burst * float(rng.uniform(0.5, 1.5)) / _rms(burst)
    return _trim(out, below_peak_db=60)


def _rustle(rng: np.random.Generator) -> np.ndarray:
    """Paper: 0.3–2.5 s of high-passed noise with a crackling, fast-changing envelope."""
    m = int(rng.uniform(0.3, 2.5) * SAMPLE_RATE_HZ)
    x = _band(rng.standard_normal(m), float(rng.uniform(800, 2000)), None)
    env = np.repeat(np.exp(rng.normal(0, 0.8, m // 80 + 1)), 80)[:m] * np.hanning(m)
    return (x * env * 0.6 / _rms(x * env)).astype(np.float32)


def _noise_babble(rng: np.random.Generator, n: int, pool: dict[str, tuple[_Region, ...]]) -> np.ndarray:
    """4–8 talkers of real speech at once (from the other room): the words are not followed, the voices are."""
    keys = sorted(pool)
    x = np.zeros(n, dtype=np.float32)
    for _ in range(int(rng.integers(4, 9))):
        key = keys[int(rng.integers(len(keys)))]
        t = int(rng.uniform(0, 2) * SAMPLE_RATE_HZ)
        gain = 10 ** (float(rng.uniform(-4, 4)) / 20)
        while t < n:
            seg = _take_real(rng, pool[key], float(rng.uniform(1.0, 6.0)))
            m = min(seg.size, n - t)
            x[t:t + m] += gain * seg[:m]
            t += m + int(rng.uniform(0.05, 0.5) * SAMPLE_RATE_HZ)
    return _band(x, 100.0, 3500.0)


# --------------------------------------------------------------------------------------------------------------
# One session
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RoomsSession:
    """A composed session before it is written: the recording, its truth and how it was made.

    ``dry`` holds each role's speech before the room (the reference turns are
    where these are non-silent); ``turns`` are ``(start_s, end_s, role)``;
    ``episodes`` are ``(start_s, end_s, label, marker)``.
    """

    recording: np.ndarray
    dry: dict[str, np.ndarray]
    turns: tuple[tuple[float, float, str], ...]
    episodes: tuple[tuple[float, float, str, str], ...]
    speakers: dict[str, Speaker]
    client_age: int
    room: Room
    info: dict

    @property
    def duration_s(self) -> float:
        return self.recording.size / SAMPLE_RATE_HZ


def _speech_mask(turns, n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    for a, b, _ in turns:
        mask[int(a * SAMPLE_RATE_HZ):int(b * SAMPLE_RATE_HZ)] = True
    return mask


def _level_dbfs(x: np.ndarray, mask: np.ndarray) -> float:
    """Active speech level: RMS over the true speech turns, dBFS."""
    return float(20 * np.log10(_rms(x[mask]) if mask.any() else _rms(x)))


def _check_args(language: str, minutes: float, *, need_espeak: bool = True, seeds: tuple = ()) -> None:
    for name, value in seeds:
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0. Got {value!r} instead.")
    if language not in _BANK:
        raise ValueError(f"language must be one of {', '.join(_BANK)}. Got {language!r} instead.")
    if not isinstance(minutes, (int, float)) or not minutes > 0:
        raise ValueError(f"minutes must be > 0. Got {minutes!r} instead.")
    if need_espeak and not espeak_available():
        raise RuntimeError("espeak-ng is not installed; `make install` installs it (apt-get install espeak-ng)")


def compose_session(*, seed: int, language: str, minutes: float, client_seed: int | None = None,
                    real_voices: bool = False) -> RoomsSession:
    """Compose one session in memory (see :func:`simulate_rooms_session`, which also writes it).

    Parameters
    ----------
    seed : int
    language : {"nl", "en"}
    minutes : float > 0
        Planned length in minutes; the recording comes out within a few
        seconds of it (utterances are not cut at the end of a block).
    client_seed : int, optional
        Default ``seed``.
    real_voices : bool
        Every utterance in a real speaker's recorded voice (the rupture's words too, which otherwise stay
        synthetic most of the time): for benchmarks that separate what synthetic voices cost from what the room
        costs (``bench/interruptions_eval.py --real-voices``); not for training data, whose words then do not
        match what is heard.

    Returns
    -------
    RoomsSession

    Raises
    ------
    ValueError
        Unknown language, ``minutes`` not positive, or a negative seed.
    RuntimeError
        espeak-ng or pyroomacoustics missing, or the shipped real speech not found.
    """
    client_seed = seed if client_seed is None else client_seed
    _check_args(language, minutes, seeds=(("seed", seed), ("client_seed", client_seed)))
    plan = session_plan(seed=seed, language=language, minutes=minutes, client_seed=client_seed)
    client = _client(client_seed, language)
    speakers = _speakers(language, client_seed, plan.parent, real_voices)
    pool = _real_pool(language, str(ROOT))
    talk = _Talk(np.random.default_rng([seed, client_seed, 7022, _SALT[language]]), language, speakers, client, pool,
                 real_voices=real_voices)
    episodes = []
    deadline = talk.now
    for kind, seconds in plan.blocks:
        deadline += seconds  # blocks keep to the plan's clock: ordinary talk absorbs what episodes ran over
        if kind == "ordinary":
            talk.ordinary(max(deadline - talk.now, 5.0))
        elif kind == "play":
            talk.play(seconds)
        elif kind == "withdrawal":
            a, b, marker = talk.withdrawal(seconds)
            episodes.append((a, b, kind, marker))
        else:
            a, b, marker = talk.confrontation(seconds)
            episodes.append((a, b, kind, marker))
    return _render(seed, client_seed, language, plan, client, speakers, pool, talk, episodes)



def _render(seed: int, client_seed: int, language: str, plan: SessionPlan, client: _Client,
            speakers: dict[str, Speaker], pool: dict[str, tuple[_Region, ...]], talk: _Talk,
            episodes: list[tuple[float, float, str, str]]) -> RoomsSession:
    """Put the utterances in the room, add noise and set the recorder's gain."""
    from scipy.signal import oaconvolve

    rng = np.random.default_rng([seed, client_seed, 7023, _SALT[language]])
    n = int((talk.now + rng.uniform(1.0, 3.0)) * SAMPLE_RATE_HZ)
    utts = sorted(talk.utts, key=lambda u: u.start)
    dry = {role: np.zeros(n, dtype=np.float32) for role in speakers}
    at_position: dict[str, np.ndarray] = {}
    turns = []
    real_s = 0.0
    for u in utts:
        a = int(round(u.start * SAMPLE_RATE_HZ))
        m = min(u.samples.size, n - a)
        dry[u.role][a:a + m] += u.samples[:m]
        at_position.setdefault(u.position, np.zeros(n, dtype=np.float32))[a:a + m] += u.samples[:m]
        turns.append((a / SAMPLE_RATE_HZ, (a + m) / SAMPLE_RATE_HZ, u.role))
        real_s += m / SAMPLE_RATE_HZ if u.source == "real" else 0.0
    speech_s = sum(b - a for a, b, _ in turns)

    room = _room(rng)
    k = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
    noise_types = [str(t) for t in rng.choice(NOISE_TYPES, size=k, replace=False)]
    names = sorted(at_position) + ["noise", "babble"]
    rirs, rt60_measured = _room_responses(room, rng, names)
    speech = np.zeros(n, dtype=np.float32)
    for pos, track in at_position.items():
        speech += oaconvolve(track, rirs[pos])[:n].astype(np.float32)
    mask = _speech_mask(turns, n)
    speech_rms = _rms(speech[mask]) if mask.any() else _rms(speech)

    snr_db = float(rng.uniform(*SNR_RANGE_DB))
    background = np.zeros(n, dtype=np.float32)
    for kind in noise_types:
        if kind == "babble":
            part = oaconvolve(_noise_babble(rng, n, pool), rirs["babble"])[:n]
        elif kind == "fan":
            part = _noise_fan(rng, n)
        elif kind == "street":
            part = _noise_street(rng, n)
        elif kind == "toys":
            part = oaconvolve(_events(rng, n, float(rng.uniform(0.1, 0.6)), None, _click), rirs["noise"])[:n]
        else:
            part = oaconvolve(_events(rng, n, float(rng.uniform(0.03, 0.2)), None, _rustle), rirs["noise"])[:n]
        background += (part / _rms(part) * float(rng.uniform(0.4, 1.0))).astype(np.float32)
    background *= speech_rms * 10 ** (-snr_db / 20) / _rms(background)
    # silent play: toys and paper during the play stretches (and some of the short pauses), not counted in the SNR
    play_spans = talk.play_spans
    spans = play_spans + [s for s in talk.silences if s[1] - s[0] >= 2.0 and rng.random() < 0.5]
    play = np.zeros(n, dtype=np.float32)
    if spans:
        play = _events(rng, n, float(rng.uniform(0.4, 1.5)), spans, _click) + \
            _events(rng, n, float(rng.uniform(0.05, 0.3)), spans, _rustle)
        if np.any(play):
            play = oaconvolve(play, rirs["noise"])[:n].astype(np.float32)
            play *= speech_rms * 10 ** (float(rng.uniform(-14, -4)) / 20) / _rms(play[np.abs(play) > 1e-6])
    mix = speech + background + play

    target_dbfs = float(rng.uniform(LEVEL_RANGE_DBFS[0] + 0.5, LEVEL_RANGE_DBFS[1] - 0.5))
    mix *= 10 ** ((target_dbfs - _level_dbfs(mix, mask)) / 20)
    knee = 0.7  # the recorder's limiter: soft above -3 dBFS, never clipping
    over = np.abs(mix) > knee
    mix[over] = np.sign(mix[over]) * (knee + (1 - knee) * np.tanh((np.abs(mix[over]) - knee) / (1 - knee)))
    level = _level_dbfs(mix, mask)

    info = {
        "generator": GENERATOR, "seed": seed, "client_seed": client_seed,
        "speech_level_dbfs": round(level, 1), "snr_db": round(snr_db, 1), "noise": noise_types,
        "room": {"size_m": [round(v, 2) for v in room.size_m], "rt60_s": round(room.rt60_s, 2),
                 "rt60_measured_s": round(rt60_measured, 2),
                 "distance_m": {p: round(room.distance_m(p), 2) for p in sorted(at_position)}},
        "parent": plan.parent, "client_talkativeness": round(client.talkativeness, 2),
        "blocks": [[k, round(s, 1)] for k, s in plan.blocks],
        "play_stretches_s": [[round(a, 2), round(b, 2)] for a, b in play_spans],
        "interruptions": {"attempts": len(talk.interruptions),
                          "succeeded": sum(i["succeeded"] for i in talk.interruptions),
                          "by": {w: sum(i["by"] == w for i in talk.interruptions) for w in speakers}},
        "real_speech_share": round(real_s / speech_s, 2) if speech_s else 0.0, "real_voices": talk.real_voices,
        "voices": {r: {"tts": vars(s.tts), "real": s.real, "real_share": round(s.real_share, 2),
                       "real_shift_st": round(s.real_shift_st, 1), "effort_db": round(s.effort_db, 1)}
                   for r, s in speakers.items()},
    }
    return RoomsSession(mix.astype(np.float32), dry, tuple(turns), tuple(episodes), speakers, client.age, room, info)


def simulate_rooms_session(out_dir: str | Path, *, seed: int, language: str, minutes: float,
                           client_seed: int | None = None, real_voices: bool = False) -> Path:
    """Write one labelled session of the ``rooms`` generator.

    The folder gets ``recording.wav`` (16 kHz mono, 16-bit), ``metadata.json``
    (as :func:`models.simulate.simulate_session` writes it, with
    ``"simulated": {"generator": "rooms", ...}``: level, SNR, noise types,
    room, interruptions, voices), ``ruptures.csv`` (``start_s,end_s,label,marker``,
    3RS withdrawal and confrontation episodes, Eubanks, Muran & Safran 2015)
    and ``reference.rttm`` (every utterance's true times, the role as speaker).

    Parameters
    ----------
    out_dir : str or Path
        Session folder (created; must not hold a session already).
    seed : int
        Seed of everything that varies within a client: plan, script, room,
        noise, recorder gain.
    language : {"nl", "en"}
    minutes : float > 0
        Approximate session length in minutes.
    client_seed : int, optional
        Seed of the client (age, sex, voice, how much the child says, the
        therapist, how often a parent comes); sessions sharing it are the same
        client. Default: ``seed``.
    real_voices : bool
        See :func:`compose_session`.

    Returns
    -------
    Path
        The session folder.

    Raises
    ------
    ValueError
        Unknown language, ``minutes`` not positive, or a negative seed.
    FileExistsError
        ``out_dir`` already holds a recording.
    RuntimeError
        espeak-ng or pyroomacoustics is not installed (run ``make install``), or
        the real speech in ``tests/data`` is missing (run from a checkout).

    References
    ----------
    Eubanks, Muran & Safran (2015), 3RS manual; Heldner & Edlund (2010) for
    gap and overlap timing; Scheibler, Bezzam & Dokmanić (2018) for the
    image-source room impulse responses. See the module docstring.
    """
    from pipeline.audio import save_wav

    client_seed = seed if client_seed is None else client_seed
    _check_args(language, minutes, seeds=(("seed", seed), ("client_seed", client_seed)))
    out = Path(out_dir)
    if (out / "recording.wav").exists():
        raise FileExistsError(f"{out}: already holds a session; choose an empty folder")
    s = compose_session(seed=seed, language=language, minutes=minutes, client_seed=client_seed,
                        real_voices=real_voices)
    out.mkdir(parents=True, exist_ok=True)
    save_wav(out / "recording.wav", s.recording, SAMPLE_RATE_HZ)
    client = _client(client_seed, language)
    participants = [{"role": "therapist", "id": f"rooms-therapist-{language}-{client.therapist_index}"},
                    {"role": "client", "age": s.client_age}]
    if "parent" in s.speakers:
        participants.append({"role": "parent"})
    meta = {"session_id": out.name, "client_id": f"rooms-{language}-{client_seed}", "language": language,
            "participants": participants, "simulated": s.info}
    (out / "metadata.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    with open(out / "reference.rttm", "w", encoding="utf-8") as f:
        for a, b, role in s.turns:
            f.write(f"SPEAKER {out.name} 1 {a:.3f} {b - a:.3f} <NA> <NA> {role} <NA> <NA>\n")
    with open(out / "ruptures.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["start_s", "end_s", "label", "marker"])
        for a, b, label, marker in s.episodes:
            w.writerow([round(a, 2), round(min(b, s.duration_s), 2), label, marker])
    return out


def simulate_rooms(out_dir: str | Path, *, sessions: int, language: str, seed: int = 0,
                   minutes: tuple[float, float] = (5.0, 12.0), sessions_per_client: int = 2) -> list[Path]:
    """Write ``sessions`` labelled sessions of the ``rooms`` generator into ``out_dir`` (one folder each).

    Parameters
    ----------
    out_dir : str or Path
        Dataset folder; sessions go to ``rooms-<language>-<seed>``.
    sessions : int >= 1
        Number of sessions.
    language : {"nl", "en"}
    seed : int
        First seed; session ``i`` uses ``seed + i``, and clients are numbered
        from ``seed`` too, so datasets from seeds far apart share no session
        or client.
    minutes : (float, float)
        Range of session lengths in minutes (uniform).
    sessions_per_client : int >= 1
        Consecutive sessions of one client (same child, voice and therapist;
        another room, script and noise each time).

    Returns
    -------
    list of Path
        The session folders.

    Raises
    ------
    ValueError
        ``sessions`` < 1, a bad ``minutes`` range, an unknown language or a negative seed.
    """
    if language not in _BANK:
        raise ValueError(f"language must be one of {', '.join(_BANK)}. Got {language!r} instead.")
    from models.simulate import batch_plan

    plan = batch_plan(sessions=sessions, seed=seed, minutes=minutes, sessions_per_client=sessions_per_client,
                      rng=np.random.default_rng([seed, 7031]))
    out = Path(out_dir)
    return [simulate_rooms_session(out / f"rooms-{language}-{s:05d}", seed=s, language=language, minutes=length,
                                   client_seed=client_seed) for s, client_seed, length in plan]
