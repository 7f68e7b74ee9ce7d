"""The shared renderers against the formats' own specifications, and the shared option rules.

Expectations are written out literally (not our constants): a Raven Pro selection table is tab-separated
with the header ``Selection  View  Channel  Begin Time (s)  End Time (s)  Low Freq (Hz)  High Freq (Hz)``
followed by measurement and annotation columns, among them ``Begin Path`` (the sound file) and ``File Offset
(s)`` (the selection's start in it), which Raven uses to open the recording at a selection; in a table of
several files ``Begin Time (s)`` runs on the files' joined timeline. An Audacity label track is
``start<TAB>end<TAB>label`` lines, no header; a BirdCLEF submission is ``row_id`` (``<soundscape>_<end second>``)
then one column per species; Kaleidoscope's CSV locates events with ``INDIR, FOLDER, IN FILE, CHANNEL, OFFSET,
DURATION`` and labels them in ``MANUAL ID``.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from pydantic import ValidationError

from soundscape import render
from soundscape.analyze import AnalyzeSettings
from soundscape.audio.functional import window_starts
from soundscape.options import ResultOptions, UnknownSpeciesError, read_species_list, resolve_species
from soundscape.pipeline import AudioFacts, Prediction
from soundscape.postprocess import PostprocessReport
from tests.utils.models import tiny_card, tiny_frontend

CARD = tiny_card(tiny_frontend()).model_copy(update={"version": 3})  # labels amered, bkcchi, comrav, houspa; 50-8000 Hz
PROBS = np.array([[0.9, 0.05, 0.5, 0.5],
                  [0.1, 0.2, 0.3, 0.4],
                  [0.0, 0.97, 0.96, 0.2]], np.float32)


def prediction(probs: np.ndarray = PROBS, hop: float = 5.0) -> Prediction:
    return Prediction(starts_s=np.arange(len(probs)) * hop, window_s=5.0, probabilities=probs,
                      postprocess=PostprocessReport(smoothing="none", applied=False),
                      audio=AudioFacts(duration_s=15.0, sample_rate=48000, channels=2))


def test_raven_selection_table_follows_ravens_layout():
    opts = ResultOptions(threshold=0.5)
    text = render.raven(render.detections(prediction(), CARD, opts), CARD, "/data/site 1.wav")
    lines = text.split("\n")
    assert lines[-1] == ""  # newline-terminated
    assert lines[0].split("\t")[:7] == ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)",
                                        "Low Freq (Hz)", "High Freq (Hz)"]
    assert lines[0].split("\t")[7:] == ["Begin Path", "File Offset (s)", "Begin File", "Species Code", "Common Name",
                                        "Confidence", "Model", "Model Version"]
    rest = "\t/data/site 1.wav\t{0}\tsite 1.wav\t{1}\t{2}\t{3}\tbirds\t3"
    assert lines[1:-1] == [
        "1\tSpectrogram 1\t1\t0.0000\t5.0000\t50\t8000" + rest.format("0.0000", "amered", "AMERED", "0.900000"),
        "2\tSpectrogram 1\t1\t0.0000\t5.0000\t50\t8000" + rest.format("0.0000", "comrav", "COMRAV", "0.500000"),
        "3\tSpectrogram 1\t1\t0.0000\t5.0000\t50\t8000" + rest.format("0.0000", "houspa", "HOUSPA", "0.500000"),
        "4\tSpectrogram 1\t1\t10.0000\t15.0000\t50\t8000" + rest.format("10.0000", "bkcchi", "BKCCHI", "0.970000"),
        "5\tSpectrogram 1\t1\t10.0000\t15.0000\t50\t8000" + rest.format("10.0000", "comrav", "COMRAV", "0.960000"),
    ]


def test_raven_tables_of_several_files_share_one_timeline_and_keep_each_files_offsets():
    opts = ResultOptions(threshold=0.5)
    dets = render.detections(prediction(), CARD, opts)
    a, b = render.raven(dets, CARD, "/data/a.wav"), render.raven(dets[:2], CARD, "/data/b.flac")
    whole = [line.split("\t") for line in render.combine("raven", [a, b], [15.5, 15.0]).splitlines()]
    parts = [line.split("\t") for text in (a, b) for line in text.splitlines()[1:]]
    assert whole[0] == a.splitlines()[0].split("\t")
    assert [r[0] for r in whole[1:]] == [str(i) for i in range(1, 8)]  # selections run on
    assert [(r[3], r[4]) for r in whole[1:]] == [("0.0000", "5.0000")] * 3 + [("10.0000", "15.0000")] * 2 + [
        ("15.5000", "20.5000")] * 2  # b's windows start where a (15.5 s) ends
    assert [r[5:] for r in whole[1:]] == [r[5:] for r in parts]  # Begin Path, File Offset (s): unchanged
    assert render.combine("raven", [], []).splitlines() == [a.splitlines()[0]]


def test_kaleidoscope_csv_locates_each_detection_in_its_folder():
    dets = render.detections(prediction(), CARD, ResultOptions(threshold=0.9))
    rows = list(csv.reader(io.StringIO(render.kaleidoscope(dets, CARD, "/data/in/site2/x.flac", "/data/in"))))
    assert rows[0][:7] == ["INDIR", "FOLDER", "IN FILE", "CHANNEL", "OFFSET", "DURATION", "MANUAL ID"]
    assert rows[0][7:] == ["common_name", "scientific_name", "confidence", "model", "model_version"]
    assert rows[1:] == [["/data/in", "site2", "x.flac", "0", "0.0000", "5.0000", "amered", "AMERED", "", "0.900000",
                         "birds", "3"],
                        ["/data/in", "site2", "x.flac", "0", "10.0000", "5.0000", "bkcchi", "BKCCHI", "", "0.970000",
                         "birds", "3"],
                        ["/data/in", "site2", "x.flac", "0", "10.0000", "5.0000", "comrav", "COMRAV", "", "0.960000",
                         "birds", "3"]]
    uploaded = list(csv.reader(io.StringIO(render.kaleidoscope(dets[:1], CARD, "x.flac"))))
    assert uploaded[1][:3] == ["", "", "x.flac"]
    two = render.combine("kaleidoscope", [render.kaleidoscope(dets, CARD, "a.wav"),
                                          render.kaleidoscope(dets[:1], CARD, "b.wav")], [15.0, 15.0])
    assert [r[2] for r in csv.reader(io.StringIO(two))] == ["IN FILE", "a.wav", "a.wav", "a.wav", "b.wav"]
    with pytest.raises(ValueError, match="audacity"):
        render.combine("audacity", [], [])


def test_audacity_labels_are_start_end_label_lines_without_header():
    text = render.audacity(render.detections(prediction(), CARD, ResultOptions(top_k=1)), CARD)
    assert text == ("0.000000\t5.000000\tAMERED;amered;0.900000\n"  # common name; code; confidence
                    "5.000000\t10.000000\tHOUSPA;houspa;0.400000\n"
                    "10.000000\t15.000000\tBKCCHI;bkcchi;0.970000\n")


def test_birdclef_rows_keep_every_window_and_the_requested_species_only():
    text = render.birdclef_csv(prediction(), CARD, "site7", species=("houspa", "amered"))
    assert text == ("row_id,houspa,amered\n"
                    "site7_5,0.500000,0.900000\n"
                    "site7_10,0.400000,0.100000\n"
                    "site7_15,0.200000,0.000000\n")
    a = render.birdclef_csv(prediction(PROBS[:2]), CARD, "a")
    b = render.birdclef_csv(prediction(PROBS[2:]), CARD, "b")
    assert render.join_csv(render.birdclef_header(CARD), [a, b]) == (
        "row_id,amered,bkcchi,comrav,houspa\n"
        "a_5,0.900000,0.050000,0.500000,0.500000\n"
        "a_10,0.100000,0.200000,0.300000,0.400000\n"
        "b_5,0.000000,0.970000,0.960000,0.200000\n")


def test_detection_csv_rows():
    dets = render.detections(prediction(), CARD, ResultOptions(threshold=0.9))
    rows = list(csv.reader(io.StringIO(render.detections_csv(dets, CARD, "in/x.flac", "x"))))
    assert rows == [["file", "start_s", "end_s", "row_id", "code", "common_name", "scientific_name", "confidence",
                     "model", "model_version"],
                    ["in/x.flac", "0.0", "5.0", "x_5", "amered", "AMERED", "", "0.900000", "birds", "3"],
                    ["in/x.flac", "10.0", "15.0", "x_15", "bkcchi", "BKCCHI", "", "0.970000", "birds", "3"],
                    ["in/x.flac", "10.0", "15.0", "x_15", "comrav", "COMRAV", "", "0.960000", "birds", "3"]]


def test_json_filters_threshold_top_k_species_in_that_order():
    doc = json.loads(render.response_json(prediction(), CARD, "rec",
                                          ResultOptions(species=["comrav", "houspa", "bkcchi"], threshold=0.3,
                                                        top_k=2)))
    assert [w["probabilities"] for w in doc["windows"]] == [
        {"comrav": 0.5, "houspa": 0.5},      # ties keep the order asked for
        {"houspa": 0.4, "comrav": 0.3},      # by falling probability (top_k ranks)
        {"bkcchi": 0.97, "comrav": 0.96},
    ]
    assert doc["summary"] == {"bkcchi": 0.97, "comrav": 0.96}
    assert [w["row_id"] for w in doc["windows"]] == ["rec_5", "rec_10", "rec_15"]
    assert doc["audio"] == {"duration_s": 15.0, "sample_rate": 48000, "channels": 2, "windows": 3}
    assert doc["timings"] == {"decode_ms": 0, "frontend_ms": 0, "model_ms": 0, "total_ms": 0}
    plain = json.loads(render.response_json(prediction(), CARD, "rec", ResultOptions(threshold=0.3)))
    assert list(plain["windows"][0]["probabilities"]) == ["amered", "comrav", "houspa"]  # no top_k: label order


@pytest.mark.parametrize("hop", [1.0, 1.5, 2.0, 2.5, 3.3, 5.0, 7.0])
def test_row_ids_are_unique_at_every_accepted_hop(hop):
    starts = window_starts(int(61.7 * 32000), 32000, 5.0, hop, 2.5)
    ids = [render.row_id("f", s + 5.0) for s in starts]
    assert len(set(ids)) == len(ids) == len(starts)


def test_hops_under_one_second_are_refused_everywhere():
    with pytest.raises(ValidationError, match="hop_s"):
        ResultOptions(hop_s=0.5)
    with pytest.raises(ValidationError, match="hop_s"):
        AnalyzeSettings(inputs=["x"], out="/tmp/o", hop_s=0.5)
    assert ResultOptions(hop_s=1.0).hop_s == 1.0
    # what a shorter hop would do: two windows share a row id
    assert render.row_id("f", 5.0) == render.row_id("f", 5.5)


def test_species_are_parsed_and_checked_alike():
    assert ResultOptions(species=["comrav,amered", "comrav"]).species == ("comrav", "amered")
    assert AnalyzeSettings(inputs=["x"], out="/tmp/o", species=["comrav,amered"]).species == ["comrav", "amered"]
    with pytest.raises(UnknownSpeciesError, match="dodo"):
        ResultOptions(species=["dodo"]).check(CARD)


def test_species_are_named_by_code_common_or_scientific_name_in_any_case(tmp_path):
    card = CARD.model_copy(update={"labels": [
        lab.model_copy(update={"common_name": f"Common {lab.code}", "scientific_name": f"Genus {lab.code}"})
        for lab in CARD.labels]})
    asked = ["houspa", "common AMERED", "GENUS comrav", "Genus bkcchi_Common bkcchi", "amered"]
    assert resolve_species(asked, card) == ("houspa", "amered", "comrav", "bkcchi")
    assert ResultOptions(species=["Common comrav,houspa"]).for_card(card).species == ("comrav", "houspa")
    with pytest.raises(UnknownSpeciesError, match="Common dodo"):
        resolve_species(["Common dodo"], card)
    listed = tmp_path / "species.txt"
    listed.write_text("\ufeff# a BirdNET-style list\nGenus houspa_Common houspa\n\n  amered  # kept\n")
    assert read_species_list(listed) == ["Genus houspa_Common houspa", "amered"]
    assert resolve_species(read_species_list(listed), card) == ("houspa", "amered")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="lists no species"):
        read_species_list(tmp_path / "empty.txt")


def test_min_conf_is_a_deprecated_alias_of_threshold():
    with pytest.warns(DeprecationWarning, match="threshold"):
        s = AnalyzeSettings(inputs=["x"], out="/tmp/o", min_conf=0.4)
    assert s.threshold == 0.4 == s.min_conf and s.options().threshold == 0.4
    with pytest.raises(ValidationError, match="deprecated name"):
        AnalyzeSettings(inputs=["x"], out="/tmp/o", min_conf=0.4, threshold=0.2)
