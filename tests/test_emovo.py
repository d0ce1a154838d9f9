"""The EMOVO adapter: the real corpus (``emovo_root``) and tiny synthetic trees for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from featurekit.cli import main
from featurekit.corpora import CORPORA, CorpusLayoutError, emodb, emovo, load_corpus

SHARED_WITH_EMODB = {"anger", "disgust", "fear", "happiness", "neutral", "sadness"}


def write_audio(path: Path) -> Path:
    """A 0.1 s 16 kHz tone at ``path`` (format from the suffix: FLAC or WAV)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(1600) / 16000
    sf.write(path, 0.1 * np.sin(2 * np.pi * 220 * t), 16000)
    return path


def make_emovo(root: Path, names: list[str]) -> Path:
    """An EMOVO-shaped tree from ``SPEAKER/FILE`` names."""
    for name in names:
        write_audio(root / name)
    return root


VALID = ["f1/dis-f1-b1.flac", "f1/gio-f1-l2.flac", "f1/sor-f1-d1.flac",
         "m2/tri-m2-n5.flac", "m2/rab-m2-b3.wav"]


# --------------------------------------------------------------------------------------------
# the real corpus


def test_emovo_real_corpus(emovo_root):
    df = load_corpus("emovo", emovo_root)
    assert len(df) == 588 and df["id"].is_unique and (df.index == df["id"]).all()
    assert df.attrs["corpus"] == "emovo" and df.attrs["root"] == str(emovo_root)
    assert df["label"].value_counts().to_dict() == {
        label: 84 for label in ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")}
    assert df["speaker"].value_counts().to_dict() == {s: 98 for s in ("f1", "f2", "f3", "m1", "m2", "m3")}
    assert (df["session"] == df["speaker"]).all()
    assert set(df.loc[df["gender"] == "f", "speaker"]) == {"f1", "f2", "f3"}
    assert set(df.loc[df["gender"] == "m", "speaker"]) == {"m1", "m2", "m3"}
    # every actor says each of the 14 sentences once per emotion
    assert (df.groupby(["speaker", "label"])["sentence"].nunique() == 14).all()
    assert df["sentence_type"].value_counts().to_dict() == {
        "nonsense": 5 * 42, "long": 4 * 42, "short": 3 * 42, "question": 2 * 42}
    assert all(Path(p).is_file() and Path(p).is_absolute() for p in df["path"])
    row = df.loc["dis-f1-b1"]
    assert (row.label, row.speaker, row.gender, row.sentence, row.sentence_type, row.emotion_code) == (
        "disgust", "f1", "f", "b1", "short", "dis")
    assert Path(row.path) == (emovo_root / "f1" / "dis-f1-b1.flac").resolve()
    assert df.loc["gio-m3-d2", ["label", "sentence_type"]].tolist() == ["happiness", "question"]


def test_corpus_info_cli(emovo_root, capsys):
    assert main(["corpus", "info", "emovo", str(emovo_root)]) == 0
    out = capsys.readouterr().out
    assert "588 utterances, 6 speakers" in out
    assert "surprise" in out and "happiness" in out


# --------------------------------------------------------------------------------------------
# label names, registry


def test_registered_and_listed(capsys):
    assert "emovo" in CORPORA.names()
    assert main(["corpora"]) == 0
    assert "emovo" in capsys.readouterr().out


def test_labels_share_emodb_names():
    """The six emotions both corpora have carry the same English names (gio -> happiness)."""
    assert set(emovo.EMOTIONS.values()) & set(emodb.EMOTIONS.values()) == SHARED_WITH_EMODB
    assert emovo.EMOTIONS["gio"] == emodb.EMOTIONS["F"] == "happiness"
    assert set(emovo.EMOTIONS.values()) - SHARED_WITH_EMODB == {"surprise"}


# --------------------------------------------------------------------------------------------
# synthetic trees


def test_synthetic_tree(tmp_path):
    root = make_emovo(tmp_path / "emovo", VALID)
    (root / "documents").mkdir()
    (root / "documents" / "readme.txt").write_text("not audio")
    (root / "f1" / "notes.txt").write_text("not audio")
    write_audio(root / "f1" / "._dis-f1-b2.flac")  # macOS resource fork
    df = load_corpus("emovo", root)
    assert list(df.index) == sorted(Path(n).stem for n in VALID)
    assert df.loc["rab-m2-b3", ["speaker", "gender", "label", "sentence", "sentence_type"]].tolist() == [
        "m2", "m", "anger", "b3", "short"]
    assert df.loc["tri-m2-n5", "sentence_type"] == "nonsense"
    assert df.loc["sor-f1-d1", "label"] == "surprise"


@pytest.mark.parametrize(("name", "problem"), [
    ("f1/dis_f1_b1.flac", "not an EMOVO file name"),
    ("f1/dis-f1.flac", "not an EMOVO file name"),
    ("f1/DIS-f1-b1.flac", "not an EMOVO file name"),
    ("f1/xyz-f1-b1.flac", "unknown EMOVO emotion code 'xyz'"),
    ("f1/dis-f1-q1.flac", "unknown EMOVO sentence type 'q'"),
    ("f1/dis-f2-b1.flac", "speaker 'f2' in the file name but the file is in speaker folder 'f1'"),
])
def test_bad_file_names_name_the_file(tmp_path, name, problem):
    root = make_emovo(tmp_path / "emovo", [*VALID, name])
    with pytest.raises(CorpusLayoutError, match=problem) as err:
        load_corpus("emovo", root)
    assert str(root / name) in str(err.value)


def test_same_utterance_twice_is_an_error(tmp_path):
    root = make_emovo(tmp_path / "emovo", [*VALID, "f1/dis-f1-b1.wav"])
    with pytest.raises(CorpusLayoutError, match="duplicate") as err:
        load_corpus("emovo", root)
    assert "dis-f1-b1" in str(err.value)


def test_wrong_roots_are_rejected(tmp_path):
    with pytest.raises(CorpusLayoutError, match="not a directory"):
        load_corpus("emovo", tmp_path / "missing")
    with pytest.raises(CorpusLayoutError, match="no actor folders") as err:
        load_corpus("emovo", tmp_path)
    assert str(tmp_path) in str(err.value)
    emodb_like = make_emovo(tmp_path / "emodb", ["wav/03a01Fa.wav"])
    with pytest.raises(CorpusLayoutError, match="no actor folders"):
        load_corpus("emovo", emodb_like)
    no_audio = tmp_path / "empty_actors"
    (no_audio / "f1").mkdir(parents=True)
    with pytest.raises(CorpusLayoutError, match="no EMOVO audio"):
        load_corpus("emovo", no_audio)
