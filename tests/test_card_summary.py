"""A retrained model's card says what it was trained on, simulated or real, and the report says it in Dutch too
(fresh-user trial, issue 15: a model retrained on simulated sessions said 'annotated sessions', and the Dutch report
said the card did not say what it was trained on)."""

from __future__ import annotations

import math

from models.training import default_summary
from pipeline.report import model_caveat


def test_simulated_training_data_is_called_simulated_in_both_languages():
    s = default_summary(4, 4, ["en", "nl"], ["rooms", "tts"])
    assert s["summary"] == ("Trained on 4 simulated sessions (generators rooms, tts) of 4 clients (en, nl), not on "
                            "real therapy audio.")
    assert s["summary_nl"].startswith("getraind op 4 gesimuleerde sessies") and "niet op echte" in s["summary_nl"]
    assert "gesimuleerde sessies" in model_caveat(s, "clinic-v1", "nl")
    assert "4 simulated sessions" in model_caveat(s, "clinic-v1", "en")


def test_real_and_mixed_training_data_say_how_many_of_each():
    real = default_summary(3, 2, ["nl"], ["real"])
    assert real["summary"] == "Trained on 3 annotated real sessions of 2 clients (nl)."
    assert real["summary_nl"] == "getraind op 3 geannoteerde echte sessies van 2 cliënten (nl)"
    mixed = default_summary(5, 4, ["nl"], ["real", "tts"], n_real=2)
    assert mixed["summary"] == "Trained on 5 annotated sessions (2 real, 3 simulated) of 4 clients (nl)."
    assert "2 echte, 3 gesimuleerde" in mixed["summary_nl"]
    assert "waarop het getraind is staat niet" not in model_caveat(mixed, "clinic-v1", "nl")


def test_one_session_or_one_client_is_said_in_the_singular():
    """Fresh-user trial: `alliance evaluate` printed "2 sessions of 1 clients"."""
    one = default_summary(1, 1, ["nl"], ["real"])
    assert one["summary"] == "Trained on 1 annotated real session of 1 client (nl)."
    assert one["summary_nl"] == "getraind op 1 geannoteerde echte sessie van 1 cliënt (nl)"
    sim = default_summary(2, 1, ["en"], ["tts"])
    assert sim["summary"].startswith("Trained on 2 simulated sessions (generators tts) of 1 client (en)")
    assert "2 gesimuleerde sessies (generatoren tts) van 1 cliënt (en)" in sim["summary_nl"]


def test_the_cards_mean_auroc_is_the_mean_of_the_table_it_stands_under():
    from models.artifact import render_card_markdown

    def types(w, c):
        row = {"n_windows": 10, "n_positive": 3, "auprc": 0.5, "recall": 0.8, "precision": 0.6, "brier": 0.1}
        return {"withdrawal": {**row, "auroc": w}, "confrontation": {**row, "auroc": c}}

    card = {"summary": "x", "version": "v", "feature_names": [], "threshold": {"value": 0.5, "why": "w"},
            "metrics": {"cross_generator": {"pairs": [{"train": "a", "test": "b", "n_windows": 1, "types": types(0.8, 0.9)},
                                                      {"train": "b", "test": "a", "n_windows": 1, "types": types(0.9, 1.0)}],
                                            "mean_auroc": {"withdrawal": 0.5, "confrontation": 0.5}}}}
    text = render_card_markdown(card)
    assert "Mean AUROC over the held-out generators: withdrawal 0.850, confrontation 0.950." in text


def test_a_rupture_free_generator_is_shown_as_the_share_of_windows_it_flags_not_as_a_row_of_dashes():
    """Rupture-free sessions of real speech (generator ``assembled``) have no positive window: AUROC and recall do
    not exist there, what counts is how many of their windows a model that did not train on them flags."""
    from models.artifact import render_card_markdown

    def types(n_pos, w, flagged):
        row = {"n_windows": 100, "n_positive": n_pos, "auprc": 0.5, "recall": 0.8 if n_pos else math.nan,
               "precision": 0.6 if n_pos else 0.0, "brier": 0.1}
        return {"withdrawal": {**row, "auroc": w, "flagged": flagged[0]},
                "confrontation": {**row, "auroc": w, "flagged": flagged[1]}}

    card = {"summary": "x", "version": "v", "feature_names": [], "threshold": {"value": 0.5, "why": "w"},
            "metrics": {"cross_generator": {"pairs": [
                {"train": "assembled+tts", "test": "rooms", "n_windows": 100, "types": types(20, 0.8, (25, 18))},
                {"train": "rooms+tts", "test": "assembled", "n_windows": 100, "types": types(0, math.nan, (7, 3))},
                {"train": "assembled+rooms", "test": "tts", "n_windows": 100, "types": types(20, 0.9, (22, 20))}],
                "mean_auroc": {}}}}
    text = render_card_markdown(card)
    assert "→ assembled" not in text.split("Mean AUROC")[0].split("|---|")[-1]  # no row in the table
    assert "withdrawal 0.850, confrontation 0.850" in text  # the mean over the generators with ruptures
    assert ("Rupture-free sessions (generator assembled, 100 windows), scored by a model trained on rooms+tts: "
            "7 % of the windows at or above the withdrawal threshold, 3 % at or above the confrontation threshold."
            in text)
