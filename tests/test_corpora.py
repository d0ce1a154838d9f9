"""Corpus adapters: miniature synthetic trees in each corpus' documented layout, plus real Emo-DB.

The public corpora (RAVDESS, CREMA-D, TESS, SAVEE, IEMOCAP, MSP-Podcast) are not on the test
machines, so each test writes a few tiny real WAV files (0.3 s of a 220 Hz sine at 16 kHz) into the
corpus' folder layout, with label files in the corpus' own formats, and checks the manifest.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from featurekit.corpora import CORPORA, CorpusLayoutError, load_corpus
from featurekit.corpora.base import REQUIRED_COLUMNS

SR = 16000


@functools.cache
def tone_bytes() -> bytes:
    """A 0.3 s, 16 kHz, 16-bit mono WAV file's bytes."""
    t = np.arange(int(0.3 * SR)) / SR
    buf = io.BytesIO()
    sf.write(buf, 0.1 * np.sin(2 * np.pi * 220 * t), SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def write_wav(path: Path) -> Path:
    """Write the test tone at ``path`` (creating folders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tone_bytes())
    return path


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` at ``path`` (creating folders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def check_manifest(df: pd.DataFrame, corpus: str | None, n: int) -> None:
    """Invariants every adapter's manifest must keep (``corpus=None``: do not check ``attrs``)."""
    assert len(df) == n
    assert all(c in df.columns for c in REQUIRED_COLUMNS)
    assert df["id"].is_unique
    assert list(df.index) == list(df["id"]) == sorted(df["id"])
    if corpus is not None:
        assert df.attrs["corpus"] == corpus
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in df["path"])


# --------------------------------------------------------------------------------------------
# miniature corpora


def make_ravdess(root: Path, *, nested: bool = False) -> Path:
    """Actor_01 (male) and Actor_02 (female): 3 speech files, 1 song file, 1 video file."""
    base = root / "Audio_Speech_Actors_01-24" if nested else root
    for name in ("Actor_01/03-01-05-02-01-01-01.wav", "Actor_01/03-01-01-01-02-02-01.wav",
                 "Actor_02/03-01-03-01-01-01-02.wav", "Actor_02/03-02-04-02-02-01-02.wav"):
        write_wav(base / name)
    write_text(base / "Actor_01" / "01-01-05-02-01-01-01.mp4", "not audio")
    return root


def make_cremad(root: Path, *, demographics: bool = True) -> Path:
    """Four clips of actors 1001 (male), 1002 and 1091 (female) and VideoDemographics.csv."""
    for stem in ("1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_TSI_SAD_LO", "1091_WSI_NEU_MD"):
        write_wav(root / "AudioWAV" / f"{stem}.wav")
    if demographics:
        write_text(root / "VideoDemographics.csv",
                   "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
                   "1002,21,Female,Caucasian,Not Hispanic\n1091,29,Female,Asian,Not Hispanic\n")
    return root


TESS_FILES = ("OAF_angry/OAF_back_angry.wav", "OAF_Pleasant_surprise/OAF_back_ps.wav",
              "YAF_happy/YAF_bar_happy.wav", "YAF_neutral/YAF_dog_neutral.wav",
              "YAF_pleasant_surprised/YAF_dog_pleasant_surprised.wav")


def make_tess(root: Path, *, flat: bool = False) -> Path:
    """Five files in per-emotion folders (or all in one folder)."""
    for rel in TESS_FILES:
        write_wav(root / (Path(rel).name if flat else rel))
    return root


SAVEE_FILES = ("DC/a01.wav", "DC/n12.wav", "JE/sa07.wav", "JK/su15.wav", "KL/h05.wav", "KL/d03.wav")


def make_savee(root: Path, *, flat: bool = False) -> Path:
    """Six files of the four speakers: AudioData/<spk>/<code>.wav or ALL/<spk>_<code>.wav."""
    for rel in SAVEE_FILES:
        spk, name = rel.split("/")
        write_wav(root / "ALL" / f"{spk}_{name}" if flat else root / "AudioData" / rel)
    if not flat:
        write_text(root / "AudioData" / "DC" / "Info.txt", "not a wav")
    return root


def iemocap_evaluation(turns: list[tuple[float, float, str, str, tuple[float, float, float]]]) -> str:
    """An EmoEvaluation file: header, then per turn the summary line and annotator lines."""
    lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    for start, end, turn, code, (v, a, d) in turns:
        lines += [f"[{start:.4f} - {end:.4f}]\t{turn}\t{code}\t[{v:.4f}, {a:.4f}, {d:.4f}]",
                  "C-E2:\tNeutral;\t()", "C-F1:\tFrustration; Anger;\t(irritated)",
                  "A-E3:\tval 3; act 2; dom  2;\t()", "A-F1:\tval 2; act 1; dom  3;\t()", ""]
    return "\n".join(lines)


def make_iemocap(root: Path) -> Path:
    """Session1 (an improvised and a scripted dialog, transcripts) and Session2 (no transcripts).

    Ses01F_impro01_F002 is labelled but has no wav.
    """
    s1 = root / "Session1"
    write_text(s1 / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt", iemocap_evaluation([
        (6.2901, 8.2357, "Ses01F_impro01_F000", "neu", (2.5, 2.5, 2.5)),
        (7.5712, 10.4750, "Ses01F_impro01_M000", "fru", (2.0, 3.5, 3.5)),
        (10.01, 11.3925, "Ses01F_impro01_F001", "xxx", (2.5, 3.0, 3.0)),
        (14.8872, 18.0175, "Ses01F_impro01_F002", "sad", (1.5, 2.0, 2.0)),
    ]))
    write_text(s1 / "dialog" / "EmoEvaluation" / "Ses01F_script01_1.txt", iemocap_evaluation([
        (120.5, 124.25, "Ses01F_script01_1_M012", "ang", (1.5, 4.0, 4.5)),
    ]))
    write_text(s1 / "dialog" / "EmoEvaluation" / "Categorical" / "Ses01F_impro01_e2_cat.txt",
               "Ses01F_impro01_F000 :Neutral state; ()\n")
    write_text(s1 / "dialog" / "transcriptions" / "Ses01F_impro01.txt",
               "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\n"
               "Ses01F_impro01_M000 [007.5712-010.4750]: Do you have your forms?\n"
               "Ses01F_impro01_F001 [010.0100-011.3925]: Yeah.\n")
    write_text(s1 / "dialog" / "transcriptions" / "Ses01F_script01_1.txt",
               "Ses01F_script01_1_M012 [120.5000-124.2500]: What are you doing here?\n")
    for dialog, turn in (("Ses01F_impro01", "F000"), ("Ses01F_impro01", "M000"), ("Ses01F_impro01", "F001"),
                         ("Ses01F_script01_1", "M012")):
        write_wav(s1 / "sentences" / "wav" / dialog / f"{dialog}_{turn}.wav")
    s2 = root / "Session2"
    write_text(s2 / "dialog" / "EmoEvaluation" / "Ses02M_impro03.txt", iemocap_evaluation([
        (3.0, 5.5, "Ses02M_impro03_F005", "exc", (4.0, 3.5, 3.0)),
    ]))
    write_wav(s2 / "sentences" / "wav" / "Ses02M_impro03" / "Ses02M_impro03_F005.wav")
    return root


MSP_LABELS = """FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set
MSP-PODCAST_0001_0008.wav,N,4.2,3.8,4.0,127,Female,Train
MSP-PODCAST_0001_0019.wav,A,5.6,2.2,5.4,127,Female,Train
MSP-PODCAST_0002_0033.wav,X,3.0,4.4,3.6,Unknown,Unknown,Development
MSP-PODCAST_0003_0001.wav,H,4.8,6.0,4.6,884,Male,Test1
MSP-PODCAST_0004_0002.wav,C,3.4,2.8,4.2,2004,Male,Test2
MSP-PODCAST_0005_0001.wav,S,2.0,1.6,2.4,2004,Male,Test2
"""


def make_msppodcast(root: Path) -> Path:
    """Six labelled segments, the last without audio."""
    for line in MSP_LABELS.splitlines()[1:-1]:
        write_wav(root / "Audios" / line.split(",")[0])
    write_text(root / "Labels" / "labels_consensus.csv", MSP_LABELS)
    return root


def make_csv_corpus(root: Path, outside: Path) -> Path:
    """Two files under root (relative paths) and one outside it (absolute path) in meta/list.csv."""
    write_wav(root / "audio" / "spk1" / "a.wav")
    write_wav(root / "audio" / "spk2" / "b.wav")
    c = write_wav(outside / "c.wav")
    write_text(root / "meta" / "list.csv",
               "file,emotion,spk,fold,valence,gender\n"
               "audio/spk1/a.wav,happy,007,1,0.5,Female\n"
               "audio/spk2/b.wav,sad,012,2,-0.25,M\n"
               f"{c},neutral,012,1,,\n")
    return root


CSV_COLUMNS = {"path": "file", "label": "emotion", "speaker": "spk"}


# --------------------------------------------------------------------------------------------
# RAVDESS


def test_ravdess_speech_default(tmp_path):
    df = load_corpus("ravdess", make_ravdess(tmp_path))
    check_manifest(df, "ravdess", 3)
    row = df.loc["03-01-05-02-01-01-01"]
    assert (row.label, row.speaker, row.session, row.gender) == ("angry", "01", "01", "m")
    assert (row.intensity, row.statement, row.repetition) == ("strong", "01", 1)
    assert row.transcript == "Kids are talking by the door"
    assert (row.modality, row.vocal_channel) == ("audio-only", "speech")
    row = df.loc["03-01-01-01-02-02-01"]
    assert (row.label, row.intensity, row.repetition) == ("neutral", "normal", 2)
    assert row.transcript == "Dogs are sitting by the door"
    assert df.loc["03-01-03-01-01-01-02", "gender"] == "f"
    assert set(df["vocal_channel"]) == {"speech"}
    info = sf.info(df["path"].iloc[0])
    assert info.samplerate == SR and info.frames == int(0.3 * SR)


def test_ravdess_vocal_channel_option(tmp_path):
    root = make_ravdess(tmp_path)
    song = load_corpus("ravdess", root, vocal_channel="song")
    assert list(song["id"]) == ["03-02-04-02-02-01-02"]
    row = song.iloc[0]
    assert (row.label, row.vocal_channel, row.speaker, row.gender) == ("sad", "song", "02", "f")
    assert len(load_corpus("ravdess", root, vocal_channel="all")) == 4
    with pytest.raises(ValueError, match="vocal_channel"):
        load_corpus("ravdess", root, vocal_channel="singing")


def test_ravdess_nested_release_folders(tmp_path):
    df = load_corpus("ravdess", make_ravdess(tmp_path, nested=True), vocal_channel="all")
    check_manifest(df, "ravdess", 4)


def test_ravdess_bad_file_name_is_named(tmp_path):
    root = make_ravdess(tmp_path)
    bad = write_wav(root / "Actor_01" / "03-01-09-01-01-01-01.wav")  # emotion 09 does not exist
    with pytest.raises(CorpusLayoutError, match="emotion") as err:
        load_corpus("ravdess", root)
    assert str(bad) in str(err.value)


def test_ravdess_speech_filter_on_song_only_release(tmp_path):
    write_wav(tmp_path / "Actor_02" / "03-02-04-02-02-01-02.wav")
    with pytest.raises(CorpusLayoutError, match="vocal_channel='all'"):
        load_corpus("ravdess", tmp_path)


# --------------------------------------------------------------------------------------------
# CREMA-D


def test_cremad_with_demographics(tmp_path):
    df = load_corpus("cremad", make_cremad(tmp_path))
    check_manifest(df, "cremad", 4)
    row = df.loc["1001_DFA_ANG_XX"]
    assert (row.label, row.speaker, row.session, row.gender) == ("anger", "1001", "1001", "m")
    assert row.transcript == "Don't forget a jacket"
    assert (row.sentence, row.level, row.intensity) == ("DFA", "XX", "unspecified")
    assert (row.age, row.race) == (51, "Caucasian")
    assert df.loc["1001_IEO_HAP_HI", "transcript"] == "It's eleven o'clock"
    assert (df.loc["1002_TSI_SAD_LO", "label"], df.loc["1002_TSI_SAD_LO", "gender"]) == ("sad", "f")
    assert df.loc["1091_WSI_NEU_MD", "transcript"] == "We'll stop in a couple of minutes"
    assert df.groupby("speaker")["gender"].first().to_dict() == {"1001": "m", "1002": "f", "1091": "f"}


def test_cremad_without_demographics_has_no_gender(tmp_path):
    df = load_corpus("cremad", make_cremad(tmp_path, demographics=False))
    check_manifest(df, "cremad", 4)
    assert "gender" not in df.columns
    assert set(df["label"]) == {"anger", "happy", "sad", "neutral"}


def test_cremad_unlisted_actor_warns(tmp_path):
    root = make_cremad(tmp_path)
    write_wav(root / "AudioWAV" / "1050_ITS_FEA_XX.wav")
    with pytest.warns(UserWarning, match="1050"):
        df = load_corpus("cremad", root)
    assert pd.isna(df.loc["1050_ITS_FEA_XX", "gender"])
    assert df.loc["1050_ITS_FEA_XX", "label"] == "fear"


def test_cremad_bad_demographics_column(tmp_path):
    root = make_cremad(tmp_path, demographics=False)
    write_text(root / "VideoDemographics.csv", "ActorID,Age,Gender\n1001,51,Male\n")
    with pytest.raises(CorpusLayoutError, match="Sex") as err:
        load_corpus("cremad", root)
    assert "VideoDemographics.csv" in str(err.value)


# --------------------------------------------------------------------------------------------
# TESS


@pytest.mark.parametrize("flat", [False, True])
def test_tess(tmp_path, flat):
    df = load_corpus("tess", make_tess(tmp_path, flat=flat))
    check_manifest(df, "tess", 5)
    row = df.loc["OAF_back_ps"]
    assert (row.label, row.speaker, row.session, row.gender) == ("surprise", "OAF", "OAF", "f")
    assert row.transcript == "Say the word back"
    assert df.loc["YAF_dog_pleasant_surprised", "label"] == "surprise"
    assert df.loc["OAF_back_angry", "label"] == "angry"
    row = df.loc["YAF_bar_happy"]
    assert (row.speaker, row.transcript) == ("YAF", "Say the word bar")
    assert sorted(df["speaker"].unique()) == ["OAF", "YAF"]


def test_tess_duplicate_copy_is_skipped_with_warning(tmp_path):
    root = make_tess(tmp_path)
    make_tess(root / "TESS Toronto emotional speech set data")
    with pytest.warns(UserWarning, match="duplicate"):
        df = load_corpus("tess", root)
    check_manifest(df, "tess", 5)


# --------------------------------------------------------------------------------------------
# SAVEE


@pytest.mark.parametrize("flat", [False, True])
def test_savee(tmp_path, flat):
    df = load_corpus("savee", make_savee(tmp_path, flat=flat))
    check_manifest(df, "savee", 6)
    assert list(df["id"]) == ["DC_a01", "DC_n12", "JE_sa07", "JK_su15", "KL_d03", "KL_h05"]
    assert df["label"].tolist() == ["anger", "neutral", "sadness", "surprise", "disgust", "happiness"]
    assert df["speaker"].tolist() == ["DC", "DC", "JE", "JK", "KL", "KL"]
    assert (df["session"] == df["speaker"]).all() and set(df["gender"]) == {"m"}
    assert df.loc["JK_su15", "sentence"] == 15


def test_savee_root_is_audiodata_folder(tmp_path):
    df = load_corpus("savee", make_savee(tmp_path) / "AudioData")
    check_manifest(df, "savee", 6)


# --------------------------------------------------------------------------------------------
# IEMOCAP


def test_iemocap(tmp_path):
    with pytest.warns(UserWarning, match="skipped 1 labelled IEMOCAP turn") as rec:
        df = load_corpus("iemocap", make_iemocap(tmp_path))
    assert "Ses01F_impro01_F002.wav" in str(rec[0].message)
    check_manifest(df, "iemocap", 5)
    assert "start" not in df.columns and "end" not in df.columns
    row = df.loc["Ses01F_impro01_M000"]
    assert (row.label, row.speaker, row.session, row.gender) == ("frustrated", "Session1M", "Session1", "m")
    assert (row.valence, row.arousal, row.dominance) == (2.0, 3.5, 3.5)
    assert (row.turn_start, row.turn_end) == pytest.approx((7.5712, 10.475))
    assert (row.dialog, row.improvisation) == ("Ses01F_impro01", "impro")
    assert row.transcript == "Do you have your forms?"
    row = df.loc["Ses01F_impro01_F000"]
    assert (row.label, row.speaker, row.gender, row.transcript) == ("neutral", "Session1F", "f", "Excuse me.")
    assert df.loc["Ses01F_impro01_F001", "label"] == "xxx"
    row = df.loc["Ses01F_script01_1_M012"]
    assert (row.label, row.speaker, row.improvisation) == ("angry", "Session1M", "script")
    assert row.dialog == "Ses01F_script01_1"
    assert (row.valence, row.arousal, row.dominance) == (1.5, 4.0, 4.5)
    row = df.loc["Ses02M_impro03_F005"]
    assert (row.label, row.speaker, row.session, row.gender) == ("excited", "Session2F", "Session2", "f")
    assert pd.isna(row.transcript)  # Session2 has no transcriptions folder
    assert df["valence"].dtype == float


def test_iemocap_unknown_label_code_names_file_and_line(tmp_path):
    root = make_iemocap(tmp_path)
    write_text(root / "Session2" / "dialog" / "EmoEvaluation" / "Ses02M_impro03.txt",
               iemocap_evaluation([(3.0, 5.5, "Ses02M_impro03_F005", "zzz", (4.0, 3.5, 3.0))]))
    with pytest.raises(CorpusLayoutError, match=r"Ses02M_impro03\.txt:3: unknown IEMOCAP label code 'zzz'"):
        load_corpus("iemocap", root)


def test_iemocap_session_without_labels(tmp_path):
    root = make_iemocap(tmp_path)
    (root / "Session3" / "sentences" / "wav").mkdir(parents=True)
    with pytest.raises(CorpusLayoutError, match="EmoEvaluation") as err:
        load_corpus("iemocap", root)
    assert str(root / "Session3") in str(err.value)


# --------------------------------------------------------------------------------------------
# MSP-Podcast


def test_msppodcast(tmp_path):
    with pytest.warns(UserWarning, match="skipped 1 labelled MSP-Podcast segment"):
        df = load_corpus("msppodcast", make_msppodcast(tmp_path))
    check_manifest(df, "msppodcast", 5)
    row = df.loc["MSP-PODCAST_0001_0019"]
    assert (row.label, row.speaker, row.session, row.gender) == ("angry", "127", "127", "f")
    assert row.split == "Train"
    assert (row.arousal, row.valence, row.dominance) == (5.6, 2.2, 5.4)
    row = df.loc["MSP-PODCAST_0002_0033"]
    assert (row.label, row.speaker, row.gender, row.split) == ("no_agreement", "Unknown", "u", "Development")
    row = df.loc["MSP-PODCAST_0003_0001"]
    assert (row.label, row.speaker, row.gender) == ("happy", "884", "m")
    assert df.loc["MSP-PODCAST_0004_0002", "label"] == "contempt"
    assert df["speaker"].map(type).eq(str).all()


def test_msppodcast_splits_option(tmp_path):
    root = make_msppodcast(tmp_path)
    train = load_corpus("msppodcast", root, splits=["Train"])
    assert list(train["id"]) == ["MSP-PODCAST_0001_0008", "MSP-PODCAST_0001_0019"]
    assert set(load_corpus("msppodcast", root, splits="Test1")["split"]) == {"Test1"}
    both = load_corpus("msppodcast", root, splits=["Train", "Development"])
    assert sorted(both["split"].unique()) == ["Development", "Train"]
    with pytest.warns(UserWarning, match="skipped 1"):  # the Test2 segment without audio
        assert len(load_corpus("msppodcast", root, splits=["Test2"])) == 1
    with pytest.raises(ValueError, match="Test9"):
        load_corpus("msppodcast", root, splits=["Test9"])


def test_msppodcast_missing_label_column(tmp_path):
    root = make_msppodcast(tmp_path)
    write_text(root / "Labels" / "labels_consensus.csv",
               "FileName,EmoClass,EmoAct\nMSP-PODCAST_0001_0008.wav,N,3\n")
    with pytest.raises(CorpusLayoutError, match="EmoVal") as err:
        load_corpus("msppodcast", root)
    assert "labels_consensus.csv" in str(err.value)


# --------------------------------------------------------------------------------------------
# CSV manifests


def test_csv_manifest(tmp_path):
    root = make_csv_corpus(tmp_path / "corpus", tmp_path / "elsewhere")
    # load_corpus(name, root, **options) cannot forward an option called "name": call the adapter
    df = load_corpus("csv", root, csv="meta/list.csv", columns=CSV_COLUMNS, name="mine")
    check_manifest(df, "mine", 3)
    assert list(df["id"]) == ["a", "b", "c"]
    assert df.loc["a", "path"] == str((root / "audio" / "spk1" / "a.wav").resolve())
    assert df.loc["c", "path"] == str((tmp_path / "elsewhere" / "c.wav").resolve())
    assert df["speaker"].tolist() == ["007", "012", "012"]
    assert (df["session"] == df["speaker"]).all()
    assert df["label"].tolist() == ["happy", "sad", "neutral"]
    assert df["fold"].tolist() == [1, 2, 1]  # extra column kept, with its own type
    assert df.loc["b", "valence"] == -0.25 and pd.isna(df.loc["c", "valence"])
    assert df.loc["a", "gender"] == "f" and df.loc["b", "gender"] == "m"
    assert not {"file", "emotion", "spk"} & set(df.columns)


def test_csv_manifest_absolute_csv_and_explicit_ids(tmp_path):
    root = make_csv_corpus(tmp_path / "corpus", tmp_path / "elsewhere")
    table = pd.read_csv(root / "meta" / "list.csv", dtype=str)
    table.insert(0, "utt", ["u1", "u2", "u3"])
    table["sess"] = ["s1", "s1", "s2"]
    table.to_csv(tmp_path / "with_ids.csv", index=False)
    df = load_corpus("csv", root, csv=str(tmp_path / "with_ids.csv"),
                     columns={**CSV_COLUMNS, "id": "utt", "session": "sess"})
    check_manifest(df, "csv", 3)
    assert list(df["id"]) == ["u1", "u2", "u3"]
    assert df["session"].tolist() == ["s1", "s1", "s2"]


def test_csv_manifest_errors(tmp_path):
    root = make_csv_corpus(tmp_path / "corpus", tmp_path / "elsewhere")
    csv_path = root / "meta" / "list.csv"
    with pytest.raises(CorpusLayoutError, match="manifest CSV not found") as err:
        load_corpus("csv", root, csv="nope.csv", columns=CSV_COLUMNS)
    assert str(root / "nope.csv") in str(err.value)
    with pytest.raises(CorpusLayoutError, match="no column 'speaker_id'") as err:
        load_corpus("csv", root, csv="meta/list.csv", columns={**CSV_COLUMNS, "speaker": "speaker_id"})
    assert str(csv_path) in str(err.value)
    with pytest.raises(CorpusLayoutError, match="missing column.*path") as err:  # only path is needed
        load_corpus("csv", root, csv="meta/list.csv", columns={"label": "emotion", "speaker": "spk"})
    assert str(csv_path) in str(err.value)
    write_text(root / "dup.csv", "path,label,speaker\naudio/spk1/a.wav,x,1\n"
               f"{tmp_path / 'elsewhere' / 'a.wav'},y,2\n")
    write_wav(tmp_path / "elsewhere" / "a.wav")
    with pytest.raises(CorpusLayoutError, match="not unique ids"):
        load_corpus("csv", root, csv="dup.csv")
    write_text(root / "missing.csv", "path,label,speaker\naudio/spk1/zzz.wav,x,1\n")
    with pytest.raises(CorpusLayoutError, match="zzz.wav"):
        load_corpus("csv", root, csv="missing.csv")


# --------------------------------------------------------------------------------------------
# wrong roots: every adapter rejects empty folders, missing folders and other corpora's trees

BUILDERS: dict[str, Callable[[Path], Path]] = {
    "ravdess": make_ravdess,
    "cremad": make_cremad,
    "tess": make_tess,
    "savee": make_savee,
    "iemocap": make_iemocap,
    "msppodcast": make_msppodcast,
    "emovo": lambda root: write_wav(root / "f1" / "dis-f1-b1.wav").parents[1],  # EMOVO: tests/test_emovo.py
}


def make_emodb_like(root: Path) -> Path:
    """An Emo-DB-shaped tree (wav/03a01Fa.wav), which no other adapter should accept."""
    write_wav(root / "wav" / "03a01Fa.wav")
    return root


@pytest.mark.parametrize("corpus", sorted(BUILDERS))
def test_empty_or_missing_root_is_rejected(tmp_path, corpus):
    with pytest.raises(CorpusLayoutError) as err:
        load_corpus(corpus, tmp_path)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(CorpusLayoutError, match="not a directory") as err:
        load_corpus(corpus, tmp_path / "missing")
    assert str(tmp_path / "missing") in str(err.value)


@pytest.mark.parametrize(("corpus", "other"), [(c, o) for c in sorted(BUILDERS)
                                                 for o in sorted(BUILDERS) + ["emodb_like"] if c != o])
def test_other_corpus_tree_is_rejected(tmp_path, corpus, other):
    root = (BUILDERS.get(other) or make_emodb_like)(tmp_path / other)
    with warnings.catch_warnings(), pytest.raises(CorpusLayoutError) as err:
        warnings.simplefilter("ignore")
        load_corpus(corpus, root)
    assert str(root) in str(err.value)


def test_all_adapters_registered():
    expected = {"ravdess", "cremad", "tess", "savee", "iemocap", "msppodcast", "csv", "emodb", "emovo"}
    assert expected <= set(CORPORA.names())
    assert all(CORPORA.get(name).description for name in CORPORA.names())


# --------------------------------------------------------------------------------------------
# Emo-DB, the real corpus


def test_emodb_real_corpus(emodb_root):
    df = load_corpus("emodb", emodb_root)
    check_manifest(df, None, 535)  # attrs: see test_emodb_manifest_keeps_attrs
    assert df["label"].value_counts().to_dict() == {
        "anger": 127, "boredom": 81, "neutral": 79, "happiness": 71, "fear": 69, "sadness": 62, "disgust": 46}
    assert df["speaker"].nunique() == 10 and (df["session"] == df["speaker"]).all()
    assert set(df.loc[df["gender"] == "f", "speaker"]) == {"08", "09", "13", "14", "16"}
    row = df.loc["03a01Fa"]
    assert (row.label, row.speaker, row.gender) == ("happiness", "03", "m")
    assert (row.recognition, row.naturalness) == (90.0, 75.0)
    assert df["recognition"].between(0, 100).all() and df["naturalness"].between(0, 100).all()


def test_emodb_manifest_keeps_attrs(emodb_root):
    df = load_corpus("emodb", emodb_root)
    assert df.attrs.get("corpus") == "emodb" and df.attrs.get("root") == str(emodb_root)
