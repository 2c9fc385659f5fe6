"""Simulated child and adolescent therapy sessions with labelled rupture episodes.

No public rupture-labelled therapy audio exists, so the shipped classifier is
trained on sessions this module writes: two or three synthetic voices
(espeak-ng; the client a child with a high-pitched voice or an adolescent),
5–20 minutes of conversation with natural gaps, pauses and backchannels, and
rupture episodes realised the way the Rupture Resolution Rating System
describes them (3RS; Eubanks, Muran & Safran 2015):

* **withdrawal**: therapist question runs, minimal responses ("weet ik niet",
  "ja", "dunno"), long response latencies, pauses framed by therapist speech
  (no answer at all), quiet and flat client speech;
* **confrontation**: complaints and refusals, the client interrupting the
  therapist, louder, faster and higher client speech.

Ordinary stretches also hold some short answers and pauses, so that no single
marker separates the classes. Voices, speaking rates, noise, episode lengths
and phrasing vary with the seed. Each session is written in the annotation
format that :mod:`models.dataset` reads: ``recording.wav``, ``metadata.json``
and ``ruptures.csv``.

Sessions are simulations: they teach the model the markers' directions, not
the look of real ruptures. A model trained on them must be validated on real,
annotated sessions before anyone relies on its flags.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.types import RUPTURE_LABELS

SAMPLE_RATE_HZ = 16000
ESPEAK_RATE_HZ = 22050

# Phrase banks. "{t}" is a topic word; each session draws its own phrasings.
_PHRASES = {
    "nl": {
        "topics": ["school", "je vrienden", "thuis", "het voetbal", "je zus", "de vakantie", "je juf", "gamen",
                   "het weekend", "je opa", "de klas", "tekenen", "zwemles", "je kamer", "de verjaardag"],
        "questions": ["Hoe gaat het met {t}?", "Wat vond je van {t}?", "Kun je iets vertellen over {t}?",
                      "Wat gebeurde er toen bij {t}?", "Hoe voelde dat voor jou?", "Wat denk je daar zelf van?",
                      "Wie was er nog meer bij {t}?", "Wat zou je willen dat er verandert?",
                      "Hoe was het deze week met {t}?", "Waar dacht je aan toen dat gebeurde?"],
        "statements": ["Dat klinkt als een drukke week.", "Ik begrijp dat het lastig was.",
                       "Fijn dat je dat vertelt.", "Dat is best veel om over na te denken.",
                       "Ik merk dat {t} belangrijk voor je is.", "We kunnen daar straks nog op terugkomen.",
                       "Dat klinkt spannend.", "Ik hoor dat je daar trots op bent."],
        "answers": ["Nou, bij {t} was het eigenlijk best leuk, we hebben veel gelachen.",
                    "Ik vond {t} deze week wel gezellig, vooral op woensdag.",
                    "Bij {t} moest ik steeds wachten en toen ging het toch goed.",
                    "Eerst was ik een beetje zenuwachtig maar daarna ging het wel beter.",
                    "Mijn moeder zei dat ik het goed had gedaan, dat vond ik fijn.",
                    "We hebben met {t} een plan gemaakt voor volgende week.",
                    "Ik denk dat ik het de volgende keer anders zou doen.",
                    "Soms vind ik {t} moeilijk, maar meestal lukt het wel.",
                    # ordinary talk has its negations too (a fact put right, a plan that fell through): without
                    # them every "niet" in the training data was a rupture's, and real talk was flagged for it
                    "Nee, het was niet op school, het was bij mijn oma.",
                    "Ik ben deze week niet naar {t} geweest, want het regende.",
                    "Dat wist ik eerst niet, maar nu snap ik het wel.",
                    "Niemand had het gezien, dus ik heb het zelf opgeruimd.",
                    "Ik had geen tijd meer voor {t}, dus dat doen we zaterdag."],
        "short": ["ja", "nee", "goed", "wel oké", "gewoon", "beetje", "ja hoor", "misschien"],
        "minimal": ["weet ik niet", "ja", "nee", "mwah", "geen idee", "weet niet", "maakt niet uit", "niks"],
        "complaints": ["Dit is echt saai.", "Waarom moet ik hier altijd over praten?", "Ik wil niet meer praten.",
                       "Dat slaat nergens op.", "Je luistert gewoon niet.", "Dit helpt toch niet.",
                       "Ik heb geen zin in die stomme vragen.", "Het is niet eerlijk dat ik hier moet zitten.",
                       "Laat maar, ik zeg niks meer.", "Je snapt het toch niet."],
        "backchannels": ["mm", "ja", "oké", "hm hm"],
        "parent": ["Thuis merken we ook dat {t} lastig is.", "Hij heeft er deze week veel over gepraat.",
                   "We hebben daar thuis afspraken over gemaakt."],
        "therapist_calm": ["Oké, dat mag.", "Ik hoor dat je boos bent.", "Dat is goed dat je dat zegt."],
    },
    "en": {
        "topics": ["school", "your friends", "home", "football", "your sister", "the holidays", "your teacher",
                   "gaming", "the weekend", "your grandpa", "class", "drawing", "swimming", "your room", "the party"],
        "questions": ["How is it going with {t}?", "What did you think of {t}?", "Can you tell me about {t}?",
                      "What happened then at {t}?", "How did that feel for you?", "What do you think about it?",
                      "Who else was there at {t}?", "What would you like to change?",
                      "How was {t} this week?", "What were you thinking when that happened?"],
        "statements": ["That sounds like a busy week.", "I understand that it was hard.",
                       "Thanks for telling me that.", "That is a lot to think about.",
                       "I notice that {t} matters to you.", "We can come back to that later.",
                       "That sounds exciting.", "I hear that you are proud of it."],
        "answers": ["Well, {t} was actually quite fun, we laughed a lot.",
                    "I liked {t} this week, especially on Wednesday.",
                    "At {t} I had to wait all the time and then it went fine anyway.",
                    "At first I was a bit nervous but after that it got better.",
                    "My mum said I did well, I liked that.",
                    "We made a plan with {t} for next week.",
                    "I think I would do it differently next time.",
                    "Sometimes {t} is hard for me, but usually it works out.",
                    "No, it wasn't at school, it was at my grandma's.",
                    "I didn't go to {t} this week because it rained.",
                    "I didn't know that at first, but now I get it.",
                    "Nobody saw it, so I cleaned it up myself.",
                    "I had no time left for {t}, so we'll do it on Saturday."],
        "short": ["yes", "no", "fine", "okay", "sort of", "a bit", "yeah sure", "maybe"],
        "minimal": ["I don't know", "yeah", "no", "dunno", "whatever", "no idea", "not really", "nothing"],
        "complaints": ["This is so boring.", "Why do I always have to talk about this?", "I don't want to talk anymore.",
                       "That makes no sense.", "You just don't listen.", "This doesn't help anyway.",
                       "I'm sick of these stupid questions.", "It's not fair that I have to sit here.",
                       "Forget it, I'm not saying anything.", "You don't understand anyway."],
        "backchannels": ["mm", "yeah", "okay", "uh huh"],
        "parent": ["At home we also notice that {t} is difficult.", "He talked about it a lot this week.",
                   "We made some agreements about that at home."],
        "therapist_calm": ["Okay, that's allowed.", "I hear that you are angry.", "It's good that you say that."],
    },
}
_VOICES = {"nl": "nl", "en": "en"}
_MARKERS = {"withdrawal": ["minimal response", "avoidant storytelling", "deferential and appeasing",
                           "denial", "shifting topic"],
            "confrontation": ["complaints about the therapist", "rejection of intervention",
                              "complaints about the activities of therapy", "pressure on the therapist"]}


@dataclass(frozen=True)
class Voice:
    """espeak-ng voice settings of one speaker."""

    variant: str  # espeak-ng variant, e.g. "f3"
    pitch: int  # espeak-ng pitch 0–99
    rate_wpm: int  # words per minute
    gain_db: float  # level of this speaker's microphone path


@dataclass
class _Utt:
    role: str
    text: str
    start: float
    voice: Voice
    pitch_shift: float = 0.0  # percent, SSML prosody pitch
    range_pct: int = 100  # SSML prosody range (100 = normal)
    rate_factor: float = 1.0
    gain_db: float = 0.0
    samples: np.ndarray | None = None

    @property
    def end(self) -> float:
        return self.start + (0.0 if self.samples is None else self.samples.size / SAMPLE_RATE_HZ)


def espeak_available() -> bool:
    """Whether the ``espeak-ng`` program is on the PATH."""
    return shutil.which("espeak-ng") is not None


def _render(text: str, language: str, u: _Utt, tmp: Path) -> np.ndarray:
    """Synthesise one utterance with espeak-ng; mono float32 at 16 kHz."""
    from scipy.signal import resample_poly

    ssml = (f'<speak><prosody pitch="{u.pitch_shift:+.0f}%" range="{u.range_pct}%">'
            f"{_xml_escape(text)}</prosody></speak>")
    wav = tmp / "u.wav"
    rate = max(80, int(u.voice.rate_wpm * u.rate_factor))
    subprocess.run(["espeak-ng", "-m", "-v", f"{_VOICES[language]}+{u.voice.variant}", "-p", str(u.voice.pitch),
                    "-s", str(rate), "-w", str(wav), ssml], check=True, capture_output=True)
    import wave

    with wave.open(str(wav)) as w:
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
        rate_hz = w.getframerate()
    x = resample_poly(raw, SAMPLE_RATE_HZ, rate_hz).astype(np.float32) if rate_hz != SAMPLE_RATE_HZ else raw
    nz = np.flatnonzero(np.abs(x) > 1e-3)  # espeak pads with silence: trim it so times are the speech's
    return x[nz[0]:nz[-1] + 1] if nz.size else x


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _Script:
    """Builds the utterance timeline of one session."""

    def __init__(self, rng: np.random.Generator, language: str, voices: dict[str, Voice]) -> None:
        self.rng, self.lang, self.voices = rng, language, voices
        self.p = _PHRASES[language]
        self.utts: list[_Utt] = []
        self.t = self.rng.uniform(1.0, 4.0)  # recording starts with a little room sound
        self.topic = self._pick("topics")

    def _pick(self, key: str) -> str:
        return str(self.rng.choice(self.p[key]))

    def _fill(self, key: str) -> str:
        return self._pick(key).replace("{t}", self.topic)

    def say(self, role: str, text: str, *, gap: float, **style) -> _Utt:
        u = _Utt(role, text, self.t + gap, self.voices[role], **style)
        self.utts.append(u)
        return u

    def gap(self, lo: float = 0.1, hi: float = 0.7) -> float:
        return float(self.rng.uniform(lo, hi))

    # the stretches -------------------------------------------------------
    def ordinary(self, seconds: float) -> None:
        end = self.t + seconds
        while self.t < end:
            if self.rng.random() < 0.2:
                self.topic = self._pick("topics")
            question = self.rng.random() < 0.55
            self._advance(self.say("therapist", self._fill("questions" if question else "statements"), gap=self.gap()))
            if "parent" in self.voices and self.rng.random() < 0.12:
                self._advance(self.say("parent", self._fill("parent"), gap=self.gap()))
            if self.rng.random() < 0.1:  # the child draws or plays in silence; the therapist goes on
                self.t += self.rng.uniform(3.0, 8.0)
                self._advance(self.say("therapist", self._fill("statements"), gap=0.0))
            # some answers are animated (louder, higher), some quiet: arousal alone must not mark a rupture
            mood = self.rng.random()
            style = (dict(gain_db=float(self.rng.uniform(3, 7)), pitch_shift=float(self.rng.uniform(8, 20)),
                          rate_factor=float(self.rng.uniform(1.05, 1.25))) if mood < 0.15 else
                     dict(gain_db=-float(self.rng.uniform(3, 6)), range_pct=int(self.rng.integers(40, 70)))
                     if mood < 0.27 else {})
            latency = (0.15, 1.2) if self.rng.random() < 0.8 else (1.5, 3.5)
            r = self.rng.random()
            if r < 0.62:
                u = self.say("client", self._fill("answers"), gap=self.gap(*latency), **style)
                self._advance(u)
                if self.rng.random() < 0.3:  # therapist backchannel after the answer
                    self._advance(self.say("therapist", self._pick("backchannels"), gap=self.gap(0.1, 0.4)))
            elif r < 0.87:  # short answers and pauses happen in ordinary talk too
                self._advance(self.say("client", self._pick("short"), gap=self.gap(0.3, 2.5), **style))
            else:
                self.t += self.rng.uniform(1.0, 3.0)  # a thinking pause, then the client answers
                self._advance(self.say("client", self._fill("answers"), gap=self.gap(0.2, 0.8), **style))

    def withdrawal(self, seconds: float) -> tuple[float, float]:
        start = self.t + 0.1
        end = self.t + seconds
        quiet = dict(gain_db=-float(self.rng.uniform(5, 10)), range_pct=int(self.rng.integers(20, 50)),
                     pitch_shift=-float(self.rng.uniform(0, 10)), rate_factor=float(self.rng.uniform(0.8, 0.95)))
        while self.t < end:
            for _ in range(int(self.rng.integers(2, 5))):  # a run of questions
                self._advance(self.say("therapist", self._fill("questions"), gap=self.gap(0.2, 1.0)))
                r = self.rng.random()
                if r < 0.3:  # no answer: a pause framed by therapist speech
                    self.t += self.rng.uniform(2.0, 7.0)
                elif r < 0.85:
                    self._advance(self.say("client", self._pick("minimal"), gap=self.gap(0.8, 5.0), **quiet))
                else:
                    self._advance(self.say("client", self._pick("short"), gap=self.gap(0.5, 3.5), **quiet))
                if self.t >= end:
                    break
        return start, self.t

    def confrontation(self, seconds: float) -> tuple[float, float]:
        start = self.t + 0.1
        end = self.t + seconds
        loud = dict(gain_db=float(self.rng.uniform(4, 9)), pitch_shift=float(self.rng.uniform(10, 30)),
                    rate_factor=float(self.rng.uniform(1.15, 1.4)), range_pct=int(self.rng.integers(120, 180)))
        while self.t < end:
            t_utt = self.say("therapist", self._fill("questions" if self.rng.random() < 0.5 else "statements"),
                             gap=self.gap(0.1, 0.5))
            self._render_one(t_utt)
            if self.rng.random() < 0.55:  # the client interrupts before the therapist has finished
                overlap = float(self.rng.uniform(0.4, min(1.5, 0.8 * t_utt.end - 0.8 * t_utt.start)))
                self.t = t_utt.end - overlap
                self._advance(self.say("client", self._pick("complaints"), gap=0.0, **loud))
            else:
                self._advance(t_utt)
                self._advance(self.say("client", self._pick("complaints"), gap=self.gap(0.0, 0.3), **loud))
            if self.rng.random() < 0.4:
                self._advance(self.say("client", self._pick("complaints"), gap=self.gap(0.1, 0.4), **loud))
            if self.rng.random() < 0.3:
                self._advance(self.say("therapist", self._pick("therapist_calm"), gap=self.gap(0.2, 0.6)))
        return start, self.t

    # rendering -------------------------------------------------------------
    def _render_one(self, u: _Utt) -> None:
        if u.samples is None:
            u.samples = _render(u.text, self.lang, u, self._tmp)

    def _advance(self, u: _Utt) -> None:
        self._render_one(u)
        self.t = max(self.t, u.end)


def _voices(rng: np.random.Generator, client_age: int, parent: bool) -> dict[str, Voice]:
    adult_f = ["f1", "f2", "f3", "f4"]
    adult_m = ["m1", "m2", "m3", "m4", "m7"]
    therapist_female = rng.random() < 0.6
    voices = {"therapist": Voice(str(rng.choice(adult_f if therapist_female else adult_m)),
                                 int(rng.integers(45, 60) if therapist_female else rng.integers(25, 45)),
                                 int(rng.integers(140, 175)), float(rng.uniform(-3, 3)))}
    if client_age < 13:  # a child: high voice
        voices["client"] = Voice(str(rng.choice(["f2", "f3", "f4", "f5"])), int(rng.integers(80, 99)),
                                 int(rng.integers(135, 170)), float(rng.uniform(-4, 2)))
    else:
        teen_f = rng.random() < 0.5
        voices["client"] = Voice(str(rng.choice(adult_f if teen_f else adult_m)),
                                 int(rng.integers(60, 75) if teen_f else rng.integers(40, 60)),
                                 int(rng.integers(140, 180)), float(rng.uniform(-4, 2)))
    if parent:
        voices["parent"] = Voice(str(rng.choice(adult_m if therapist_female else adult_f)),
                                 int(rng.integers(30, 55)), int(rng.integers(140, 170)), float(rng.uniform(-3, 3)))
    return voices


def simulate_session(out_dir: str | Path, *, seed: int, language: str, minutes: float,
                     client_seed: int | None = None, episode_s: tuple[float, float] = (45.0, 120.0),
                     min_ordinary_s: float = 15.0) -> Path:
    """Write one labelled session: ``recording.wav``, ``metadata.json``, ``ruptures.csv``, ``reference.rttm`` and
    ``reference.stm``.

    ``reference.rttm`` holds every utterance's true times with its role as the
    speaker name (for checking diarization and markers against the truth);
    ``reference.stm`` the same with each utterance's words (for WER).

    Parameters
    ----------
    out_dir : str or Path
        Session folder (created; must not hold a session already).
    seed : int
        Seed of everything that varies within a client: script, phrasing,
        rupture episodes, noise.
    language : {"nl", "en"}
    minutes : float > 0
        Approximate session length in minutes.
    client_seed : int, optional
        Seed of the client (voice, age, whether a parent joins); sessions
        sharing it are the same client. Default: ``seed``.
    episode_s : (float, float)
        Range of rupture episode lengths in seconds; a session has one
        withdrawal and one confrontation episode per 6 minutes (at least one
        of each).
    min_ordinary_s : float > 0
        Shortest stretch of ordinary talk before, between and after the
        episodes, in seconds (each then varies by ±40 %); it decides the
        length of sessions shorter than their episodes allow (``minutes``
        below about 1.5).

    Returns
    -------
    Path
        The session folder.

    Raises
    ------
    ValueError
        Unknown language, or ``minutes`` not positive.
    FileExistsError
        ``out_dir`` already holds a recording.
    RuntimeError
        espeak-ng is not installed (run ``make install``).
    """
    from pipeline.audio import save_wav

    if language not in _PHRASES:
        raise ValueError(f"language must be one of {', '.join(_PHRASES)}. Got {language!r} instead.")
    if not minutes > 0:
        raise ValueError(f"minutes must be > 0. Got {minutes!r} instead.")
    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed; `make install` installs it (apt-get install espeak-ng)")
    out = Path(out_dir)
    if (out / "recording.wav").exists():
        raise FileExistsError(f"{out}: already holds a session; choose an empty folder")
    client_seed = seed if client_seed is None else client_seed
    crng = np.random.default_rng(client_seed)
    client_age = int(crng.integers(7, 18))
    parent = bool(crng.random() < 0.3)
    voices = _voices(crng, client_age, parent)
    rng = np.random.default_rng([seed, client_seed])
    script = _Script(rng, language, voices)
    episodes: list[tuple[float, float, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        script._tmp = Path(tmp)
        total = minutes * 60.0
        kinds = list(RUPTURE_LABELS) * int(max(1, round(minutes / 6)))
        kinds = [str(k) for k in rng.permutation(kinds)]
        n_ord = len(kinds) + 1
        rupture_s = [float(rng.uniform(*episode_s)) for _ in kinds]
        ordinary_s = max(min_ordinary_s, (total - sum(rupture_s)) / n_ord)
        script.ordinary(ordinary_s * rng.uniform(0.6, 1.4))
        for kind, length in zip(kinds, rupture_s):
            a, b = script.withdrawal(length) if kind == "withdrawal" else script.confrontation(length)
            episodes.append((a, b, kind, str(rng.choice(_MARKERS[kind]))))
            script.ordinary(ordinary_s * rng.uniform(0.6, 1.4))
    duration = script.t + rng.uniform(1.0, 3.0)
    mix = np.zeros(int(duration * SAMPLE_RATE_HZ) + SAMPLE_RATE_HZ, dtype=np.float32)
    for u in script.utts:
        a = int(u.start * SAMPLE_RATE_HZ)
        seg = u.samples * 10 ** ((u.voice.gain_db + u.gain_db - 6.0) / 20)
        mix[a:a + seg.size] += seg[: mix.size - a]
    speech_rms = float(np.sqrt(np.mean(mix[np.abs(mix) > 1e-4] ** 2))) if np.any(np.abs(mix) > 1e-4) else 0.1
    snr_db = rng.uniform(15, 35)
    noise = np.cumsum(rng.standard_normal(mix.size)).astype(np.float32)  # brown noise: room rumble
    noise -= np.convolve(noise, np.ones(801) / 801, mode="same")  # remove the drift
    noise += 0.5 * rng.standard_normal(mix.size).astype(np.float32)  # and some hiss
    noise *= speech_rms * 10 ** (-snr_db / 20) / max(float(np.sqrt(np.mean(noise ** 2))), 1e-9)
    mix = mix + noise
    mix *= 10 ** (rng.uniform(-8, 0) / 20) * 0.9 / max(float(np.abs(mix).max()), 1e-9)  # recorder level
    out.mkdir(parents=True, exist_ok=True)
    save_wav(out / "recording.wav", mix, SAMPLE_RATE_HZ)
    participants = [{"role": "therapist", "id": f"sim-therapist-{client_seed % 7}"},
                    {"role": "client", "age": client_age}]
    if parent:
        participants.append({"role": "parent"})
    meta = {"session_id": out.name, "client_id": f"sim-{language}-{client_seed}", "language": language,
            "participants": participants,
            "simulated": {"seed": seed, "client_seed": client_seed, "snr_db": round(float(snr_db), 1),
                          "voices": {r: vars(v) for r, v in voices.items()}}}
    (out / "metadata.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    with open(out / "reference.rttm", "w", encoding="utf-8") as f:  # who spoke when, by role: the truth
        for u in sorted(script.utts, key=lambda u: u.start):
            f.write(f"SPEAKER {out.name} 1 {u.start:.3f} {u.end - u.start:.3f} <NA> <NA> {u.role} <NA> <NA>\n")
    with open(out / "reference.stm", "w", encoding="utf-8") as f:  # what was said, for WER (NIST STM lines)
        for u in sorted(script.utts, key=lambda u: u.start):
            f.write(f"{out.name} 1 {u.role} {u.start:.3f} {u.end:.3f} {u.text}\n")
    with open(out / "ruptures.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["start_s", "end_s", "label", "marker"])
        for a, b, kind, marker in episodes:
            w.writerow([round(a, 2), round(min(b, duration), 2), kind, marker])
    return out


def simulate(out_dir: str | Path, *, sessions: int, language: str, seed: int = 0,
             minutes: tuple[float, float] = (5.0, 20.0), sessions_per_client: int = 2,
             episode_s: tuple[float, float] = (45.0, 120.0), min_ordinary_s: float = 15.0) -> list[Path]:
    """Write ``sessions`` labelled sessions into ``out_dir`` (one folder each).

    Parameters
    ----------
    out_dir : str or Path
        Dataset folder.
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
        Consecutive sessions of one client (same voice and age).
    episode_s : (float, float)
        Range of rupture episode lengths in seconds.
    min_ordinary_s : float > 0
        Shortest stretch of ordinary talk (:func:`simulate_session`).

    Returns
    -------
    list of Path
        The session folders.
    """
    out = Path(out_dir)
    return [simulate_session(out / f"sim-{language}-{s:05d}", seed=s, language=language, minutes=length,
                             client_seed=client_seed, episode_s=episode_s, min_ordinary_s=min_ordinary_s)
            for s, client_seed, length in batch_plan(sessions=sessions, seed=seed, minutes=minutes,
                                                     sessions_per_client=max(1, sessions_per_client),
                                                     rng=np.random.default_rng(seed))]


def batch_plan(*, sessions: int, seed: int, minutes: tuple[float, float], sessions_per_client: int,
               rng: np.random.Generator) -> list[tuple[int, int, float]]:
    """Seeds and lengths of a batch of simulated sessions (both generators number them this way).

    Parameters
    ----------
    sessions : int >= 1
    seed : int
        Session ``i`` gets seed ``seed + i``; consecutive groups of ``sessions_per_client`` share a client, whose
        seed is ``seed`` plus the group's number.
    minutes : (float, float)
        Range of session lengths in minutes (uniform), ``0 < MIN <= MAX``.
    sessions_per_client : int >= 1
    rng : np.random.Generator
        Draws the lengths.

    Returns
    -------
    list of (int, int, float)
        Per session: its seed, its client's seed, its length in minutes.

    Raises
    ------
    ValueError
        ``sessions`` < 1, a bad ``minutes`` range or ``sessions_per_client`` < 1.
    """
    if sessions < 1:
        raise ValueError(f"sessions must be >= 1. Got {sessions} instead.")
    lo, hi = minutes
    if not 0 < lo <= hi:
        raise ValueError(f"minutes must be a range 0 < MIN <= MAX. Got {minutes!r} instead.")
    if sessions_per_client < 1:
        raise ValueError(f"sessions_per_client must be >= 1. Got {sessions_per_client} instead.")
    return [(seed + i, seed + i // sessions_per_client, float(rng.uniform(lo, hi))) for i in range(sessions)]


def episode_summary(folder: str | Path) -> dict[str, float]:
    """Seconds of each rupture type in a simulated session (from its ``ruptures.csv``).

    Parameters
    ----------
    folder : str or Path
        The simulated session's folder, holding ``ruptures.csv`` with the
        columns ``start_s``, ``end_s`` and ``label``.

    Returns
    -------
    dict of str to float
        Rupture label to its total length in seconds, rounded down to 0.1 s;
        a label without episodes is absent.

    Raises
    ------
    OSError
        ``ruptures.csv`` is missing or cannot be read.
    KeyError
        A needed column is missing.
    ValueError
        A time is not a number.
    """
    totals: dict[str, float] = {}
    with open(Path(folder) / "ruptures.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            totals[row["label"]] = totals.get(row["label"], 0.0) + float(row["end_s"]) - float(row["start_s"])
    return {k: math.floor(v * 10) / 10 for k, v in totals.items()}
