"""Terminal conventions of ``featurekit``: --version, -v/-q, one --store default, --jobs help,
``corpus info`` arguments, exit codes, a closed stdout, ``features`` output."""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import featurekit
from featurekit.cli import build_parser, main

FEATUREKIT = [sys.executable, "-m", "featurekit"]
REPO_ROOT = Path(__file__).resolve().parents[1]

SPEC = """
name = "conventions"
seed = 0
[corpus]
name = "synthetic"
root_env = "FK_TEST_CONVENTIONS_ROOT"
[features]
sets = ["mfcc.mean_std"]
[evaluation]
normalisation = ["speaker"]
inner_folds = 2
[models.svm]
grid = {kernel = ["linear"], C = [0.01, 1.0]}
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """A small seeded synthetic corpus (3 speakers x 4 classes x 2) and a spec for it."""
    from featurekit.corpora.synthetic import make_synthetic_corpus

    base = tmp_path_factory.mktemp("conventions")
    make_synthetic_corpus(base / "corpus", n_speakers=3, n_per_class=2, duration=1.0, seed=0)
    spec = base / "spec.toml"
    spec.write_text(SPEC)
    return base / "corpus", spec


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def option(p: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in p._actions if flag in a.option_strings), None)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"featurekit {featurekit.__version__}"


@pytest.mark.parametrize("flags, info, debug", [
    ([], True, False),
    (["-q"], False, False),
    (["--quiet"], False, False),
    (["-v"], True, True),
])
@pytest.mark.parametrize("where", ["before", "after"])
def test_global_verbosity_flags(corpus, tmp_path, monkeypatch, capsys, flags, info, debug, where):
    root, _ = corpus
    monkeypatch.setenv("FEATUREKIT_STORE", str(root.parent / "shared-store"))  # warm after the first run
    extract = ["extract", "--corpus", "synthetic", "--root", str(root), "--features", "mfcc", "--jobs", "1"]
    before = logging.getLogger("featurekit").level
    assert main(flags + extract if where == "before" else extract + flags) == 0
    err = capsys.readouterr().err
    assert ("featurekit extract: feature store:" in err) == info  # info messages
    assert ("featurekit extract: tables: mfcc.mean_std" in err) == debug  # debug messages
    assert logging.getLogger("featurekit").level == before  # main() leaves logging as it was


def test_store_default_is_shared_printed_and_quiet_hides_progress(corpus, tmp_path, monkeypatch, capsys):
    root, _ = corpus
    stores = {name: option(p, "--store") for name, p in subcommands().items() if option(p, "--store")}
    assert {"extract", "evaluate", "train"} <= set(stores)
    assert {(a.default, a.help) for a in stores.values()} == {(None, stores["extract"].help)}
    assert "$FEATUREKIT_STORE" in stores["extract"].help and "./store" in stores["extract"].help

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FEATUREKIT_STORE", raising=False)
    extract = ["extract", "--corpus", "synthetic", "--root", str(root), "--features", "mfcc", "--jobs", "1"]
    assert main(extract) == 0
    err = capsys.readouterr().err
    assert f"featurekit extract: feature store: {tmp_path / 'store'} (default" in err
    assert "%|" in err  # the progress bar
    assert (tmp_path / "store" / "synthetic").is_dir()

    monkeypatch.setenv("FEATUREKIT_STORE", str(tmp_path / "elsewhere"))
    assert main(["-q", *extract]) == 0
    err = capsys.readouterr().err
    assert "%|" not in err and "feature store" not in err  # -q: no progress, no notes
    assert (tmp_path / "elsewhere" / "synthetic").is_dir()
    assert main(extract) == 0
    assert f"feature store: {tmp_path / 'elsewhere'} ($FEATUREKIT_STORE)" in capsys.readouterr().err


def test_train_shows_progress_and_readable_hyperparameters_then_predict_into_a_closed_pipe(
        corpus, tmp_path, monkeypatch, capsys):
    root, spec = corpus
    store = root.parent / "shared-store"  # the same rows as test_global_verbosity_flags extracts
    monkeypatch.setenv("FEATUREKIT_STORE", str(store))
    out = tmp_path / "model"
    assert main(["train", str(spec), "--system", "mfcc.mean_std:svm", "--root", str(root), "-o", str(out),
                 "--jobs", "1"]) == 0
    cap = capsys.readouterr()
    assert f"featurekit train: feature store: {store} ($FEATUREKIT_STORE)" in cap.err
    assert re.search(r"featurekit train: label: searching 2 candidates over 2 speaker-grouped inner folds",
                     cap.err)
    assert "featurekit train: saving" in cap.err
    assert re.search(r"hyperparameters of label \(inner-CV UAR [\d.]+, 2 candidates\):\n    C +[\d.]+\n",
                     cap.out)
    assert "{" not in cap.out  # no dict reprs

    files = sorted(str(p) for p in root.rglob("*.wav"))[:3]
    monkeypatch.setattr(sys, "stdout", ClosedPipe())  # the reader went away (`| head -0`); the real pipe
    assert main(["predict", str(out), *files]) == 141  # is exercised end to end with `corpora` below
    assert sys.stdout.attempts >= 1
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err and "error" not in err


class ClosedPipe:
    """A standard output whose reader has gone: every write raises BrokenPipeError (as on EPIPE)."""

    def __init__(self) -> None:
        self.attempts = 0

    def write(self, text: str) -> int:
        self.attempts += 1
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        raise OSError("not a real file")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    return env


def test_a_reader_that_stops_early_ends_quietly():
    r = subprocess.run(f"{' '.join(FEATUREKIT)} corpora | head -1", shell=True, capture_output=True,
                       text=True, env=_env())
    assert r.stdout.count("\n") == 1 and r.stderr == ""
    proc = subprocess.Popen([*FEATUREKIT, "corpora"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env())
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and err == ""


def test_jobs_is_documented_on_every_command_that_takes_it():
    with_jobs = {name: option(p, "--jobs") for name, p in subcommands().items() if option(p, "--jobs")}
    assert {"extract", "evaluate", "train", "predict", "demo"} <= set(with_jobs)
    for name, action in with_jobs.items():
        assert action.help and "worker processes" in action.help and "default" in action.help, name


def test_corpus_info_takes_corpus_and_root_like_extract(corpus, capsys):
    root, _ = corpus
    assert main(["corpus", "info", "--corpus", "synthetic", "--root", str(root)]) == 0
    new = capsys.readouterr().out
    assert main(["corpus", "info", "synthetic", str(root)]) == 0  # the older positional form
    assert capsys.readouterr().out == new
    assert new.startswith(f"synthetic at {root}: 24 utterances, 3 speakers")
    assert main(["corpus", "info", "synthetic", str(root), "--corpus", "emodb"]) == 2
    assert "featurekit corpus: error: --corpus 'emodb' and the positional 'synthetic' disagree" in \
        capsys.readouterr().err
    assert main(["corpus", "info", "--corpus", "synthetic"]) == 2
    assert "featurekit corpus: error: give --corpus NAME --root ROOT" in capsys.readouterr().err


def test_exit_codes(corpus, tmp_path, monkeypatch, capsys):
    root, spec = corpus
    monkeypatch.delenv("FK_TEST_CONVENTIONS_ROOT", raising=False)
    # 2: usage and spec errors, one line with the usual prefix
    assert main(["evaluate", str(spec), "--out", str(tmp_path / "o"), "--store", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("featurekit evaluate: error:") and "--root" in err
    assert "FK_TEST_CONVENTIONS_ROOT" in err
    assert err.count("\n") == 1
    assert main(["extract", "--corpus", "nope", "--root", str(root), "--features", "mfcc"]) == 2
    assert "featurekit extract: error: unknown corpus 'nope'" in capsys.readouterr().err
    assert main(["extract", "--corpus", "synthetic", "--root", str(root), "--features", "mfcc",
                 "--param", "bad"]) == 2
    assert "featurekit extract: error: --param 'bad'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["extract", "--corpus", "synthetic"])  # argparse: missing arguments
    assert exit_.value.code == 2
    capsys.readouterr()
    # 1: data failures
    wav = next(root.rglob("*.wav"))
    (tmp_path / "list.csv").write_text(f"path\n{wav}\n{tmp_path / 'gone.wav'}\n")
    with pytest.warns(UserWarning, match="not found"):
        rc = main(["extract", "--corpus", "csv", "--root", str(tmp_path), "--corpus-option", "csv=list.csv",
                   "--features", "mfcc", "--store", str(tmp_path / "s"), "--jobs", "1", "-q"])
    cap = capsys.readouterr()
    assert rc == 1 and "FAILED" in cap.out and "gone.wav: file not found" in cap.out
    assert "featurekit extract: 1 file(s) failed" in cap.err
    nolabels = tmp_path / "nolabels.toml"
    nolabels.write_text(SPEC.replace('name = "synthetic"', 'name = "csv"\noptions = {csv = "list.csv"}'))
    assert main(["evaluate", str(nolabels), "--root", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--store", str(tmp_path / "s"), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("featurekit evaluate: error: task: the corpus manifest has no column 'label'")


def test_features_prints_no_exception_class_names(capsys):
    assert main(["features"]) == 0
    out = capsys.readouterr().out
    assert "whisper_ct2" in out and "dimensions not computed: " in out
    assert not re.search(r"\b\w*(Error|Exception)\b", out), out
