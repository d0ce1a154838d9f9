"""Optional dependencies: the core install runs the classical path without them, and a feature or model
whose extra is missing says which extra to install (``pip install "featurekit[EXTRA]"``).

A missing package is simulated in a subprocess by a meta-path hook that refuses to import it, as
Python does for a package that is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ("torch", "xgboost", "pyAudioAnalysis", "eyed3", "pydub", "plotly", "hmmlearn", "imblearn",
            "transformers", "ctranslate2", "dask", "distributed")

HOOK = textwrap.dedent("""
    import sys
    BLOCKED = set(sys.argv[1].split(","))

    class _NotInstalled:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _NotInstalled())
""")


def run_blocked(blocked: tuple[str, ...], code: str, *args: str, cwd: Path | None = None):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-c", HOOK + textwrap.dedent(code), ",".join(blocked), *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_hook_really_blocks():
    r = run_blocked(("xgboost",), "import xgboost")
    assert r.returncode != 0 and "No module named 'xgboost'" in r.stderr


def test_core_runs_egemaps_svm_without_any_optional_package(tmp_path):
    code = """
        import featurekit, featurekit.extraction, featurekit.evaluation, featurekit.report, featurekit.api
        import featurekit.deploy, featurekit.cli
        from featurekit.cli import build_parser, main
        from featurekit.corpora.synthetic import make_synthetic_corpus
        from featurekit.evaluation import run, validate

        build_parser()
        root = sys.argv[2]
        make_synthetic_corpus(root + "/corpus", n_speakers=3, n_per_class=2, duration=1.0, seed=0)
        spec = validate({"name": "lean", "seed": 0, "corpus": {"name": "synthetic"},
                         "protocol": {"name": "loso", "group": "speaker"},
                         "features": {"sets": ["egemaps", "mfcc.mean_std"]},
                         "evaluation": {"normalisation": ["global"], "bootstrap": 0},
                         "models": {"svm": {"grid": {"C": [1.0]}}}})
        df = run(spec, root + "/corpus", root + "/results", store=root + "/store", jobs=1, progress=False)
        uar = df[(df.metric == "uar") & (df.fold == "pooled")]
        assert len(uar) == 2 and uar.value.between(0, 1).all(), uar
        assert main(["features", "--no-dims"]) == 0
        assert main(["models"]) == 0
        loaded = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
        print("LOADED", loaded)
    """
    r = run_blocked(OPTIONAL, code, str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "LOADED []" in r.stdout
    # the registries still list every extractor and model, marking those that cannot run here
    lines = r.stdout.splitlines()
    for name, extra in (("paa", "paa"), ("paa_d", "paa"), ("hf_encoder", "ssl"), ("whisper_ct2", "ssl")):
        i = next(i for i, line in enumerate(lines) if line.startswith(name + " "))
        assert f'unavailable: the {name} extractor needs' in lines[i + 1]
        assert f'pip install "featurekit[{extra}]"' in lines[i + 1]
    for name, extra in (("xgb", "xgb"), ("torch_mlp", "deep"), ("gru", "deep")):
        assert any(line.split()[:1] == [name] and f'pip install "featurekit[{extra}]"' in line
                   for line in lines), name
    assert any(line.split() == ["svm"] for line in lines)


MAKE = "from featurekit.extractors import make_extractor; make_extractor"
BUILD = "from featurekit.evaluation.models import CLASSIFIERS; CLASSIFIERS.get"


@pytest.mark.parametrize("blocked, extra, code", [
    (("pyAudioAnalysis",), "paa", f"{MAKE}('paa')"),
    (("eyed3",), "paa", f"{MAKE}('paa_d')"),
    (("pyAudioAnalysis",), "paa",  # an extractor made without the registry fails on first use, as clearly
     "import numpy as np; from featurekit.extractors.paa import PAA; "
     "PAA().lld(np.zeros(16000, np.float32), 16000)"),
    (("torch",), "ssl", f"{MAKE}('hf_encoder')"),
    (("ctranslate2",), "ssl", f"{MAKE}('whisper_ct2')"),
    (("xgboost",), "xgb", f"{BUILD}('xgb').build(0, None)"),
    (("torch",), "deep", f"{BUILD}('torch_mlp').build(0, None)"),
])
def test_missing_extra_names_the_extra(blocked, extra, code):
    r = run_blocked(blocked, f"""
        from featurekit.extras import MissingExtraError
        try:
            {code}
        except MissingExtraError as err:
            print("MESSAGE", err)
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f'pip install "featurekit[{extra}]"' in r.stdout and blocked[0] in r.stdout


SPEC = """
name = "x"
[corpus]
name = "synthetic"
[features]
sets = ["{feature}"]
[models.m]
model = "{model}"
"""


@pytest.mark.parametrize("blocked, feature, model, extra", [
    (("xgboost",), "egemaps", "xgb", "xgb"),
    (("torch",), "egemaps", "torch_mlp", "deep"),
    (("pyAudioAnalysis",), "paa.mean_std", "svm", "paa"),
    (("transformers",), "hf_encoder", "svm", "ssl"),
])
def test_spec_load_and_cli_name_the_extra_without_a_traceback(tmp_path, blocked, feature, model, extra):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(feature=feature, model=model))
    r = run_blocked(blocked, """
        from featurekit.cli import main
        sys.exit(main(["evaluate", sys.argv[2], "--root", sys.argv[3], "--out", sys.argv[3] + "/out"]))
    """, str(spec), str(tmp_path))
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert f'pip install "featurekit[{extra}]"' in r.stderr and "featurekit evaluate: error:" in r.stderr
    assert not (tmp_path / "out").exists()


def test_cli_extract_names_the_extra(tmp_path):
    r = run_blocked(("pyAudioAnalysis",), """
        from featurekit.cli import main
        sys.exit(main(["extract", "--corpus", "synthetic", "--root", sys.argv[2], "--features", "paa",
                       "--store", sys.argv[2] + "/store"]))
    """, str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert 'pip install "featurekit[paa]"' in r.stderr


def test_extras_in_pyproject_match_the_registry():
    from featurekit.extras import EXTRAS

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(EXTRAS) <= set(extras)
    assert extras["all"] == [f"featurekit[{','.join(EXTRAS)}]"]
    assert "featurekit[all]" in extras["dev"]
    core = " ".join(project["dependencies"]).lower()
    for name in ("torch", "xgboost", "pyaudioanalysis", "transformers", "ctranslate2", "dask", "plotly"):
        assert name not in core, name
    torch_specs = {d for deps in extras.values() for d in deps if d.startswith("torch")}
    assert torch_specs == {"torch>=2.4,<=2.13.0"}
