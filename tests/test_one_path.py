"""A file featurised on the predict path (:class:`featurekit.deploy.features.FeatureComputer`) equals the
feature store's row bit for bit, for every extractor that needs no downloaded model and every table kind
(native functionals, every HSF functional, LLD frames).

The pretrained encoders (``hf_encoder``, ``whisper_ct2``) are left out here: they need model files
(``tests/test_ssl.py`` covers them with the real models).
"""

from __future__ import annotations

import numpy as np
import pytest

from featurekit.audio import AudioOptions, load_audio
from featurekit.deploy.features import FeatureComputer
from featurekit.extraction import FeatureRequest, extract, load_features
from featurekit.extractors import EXTRACTORS, FUNCTIONALS, make_extractor
from featurekit.store import FeatureStore, feature_columns, to_sequences

NEEDS_A_MODEL = {"hf_encoder", "whisper_ct2"}


def _kinds(ext) -> list[str]:
    kinds = ["native"] if ext.has_native else []
    if ext.has_lld:
        kinds += [*FUNCTIONALS.names(), "lld"]
    return kinds


def _available(name: str):
    try:
        return make_extractor(name)
    except ImportError as err:  # an optional extra that is not installed
        pytest.skip(f"{name}: {err}")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from featurekit.corpora.synthetic import make_synthetic_corpus

    base = tmp_path_factory.mktemp("one_path")
    manifest = make_synthetic_corpus(base / "corpus", n_speakers=1, n_per_class=1, duration=1.2, seed=3)
    return base, manifest.head(2).reset_index(drop=True)


@pytest.mark.parametrize("name", sorted(set(EXTRACTORS.names()) - NEEDS_A_MODEL))
def test_predict_path_equals_the_store_row_bit_for_bit(corpus, name):
    base, manifest = corpus
    ext = _available(name)
    audio = AudioOptions()
    store = FeatureStore(base / f"store-{name}")
    kinds = _kinds(ext)
    request = FeatureRequest(ext, tuple(kinds))
    summary = extract(manifest, [request], store, corpus="synthetic", audio=audio, jobs=1, progress=False)
    assert not summary.failures
    for kind in kinds:
        table = load_features(store, manifest, request, kind, corpus="synthetic", audio=audio)
        columns = feature_columns(table)
        computer = FeatureComputer({"sequences": kind == "lld", "members": [
            {"extractor": name, "kind": kind, "layer": None, "params": {}, "columns": columns}]}, audio)
        stored = (to_sequences(table, manifest["id"].tolist()) if kind == "lld"
                  else table.loc[manifest["id"], columns].to_numpy(np.float32))
        for i, path in enumerate(manifest["path"]):
            got = computer.compute(load_audio(path, options=audio), path)
            assert got.dtype == stored[i].dtype and got.shape == stored[i].shape, (name, kind)
            assert got.tobytes() == np.ascontiguousarray(stored[i]).tobytes(), (name, kind, path)
