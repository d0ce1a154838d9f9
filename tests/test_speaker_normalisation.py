"""Per-speaker normalisation as one fitted transformer (``SpeakerNormaliser``) shared by evaluation,
training and prediction; evaluation's features must stay bit-identical to the former functions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from featurekit.evaluation.normalisation import (
    PopulationStatisticsWarning,
    SpeakerNormaliser,
    speaker_zscore,
    speaker_zscore_sequences,
)


def _old_speaker_zscore(x, speakers):  # the implementation before SpeakerNormaliser, verbatim
    out = np.empty_like(x, dtype=np.float64)
    for s in np.unique(speakers):
        m = speakers == s
        xs = x[m].astype(np.float64)
        mu, sd = xs.mean(axis=0), xs.std(axis=0)
        out[m] = (xs - mu) / np.where(sd > 0, sd, 1.0)
    return out.astype(np.float32)


def _old_speaker_zscore_sequences(seqs, speakers):  # verbatim, as above
    out = np.empty(len(seqs), dtype=object)
    for s in np.unique(speakers):
        idx = np.flatnonzero(speakers == s)
        frames = np.concatenate([seqs[i] for i in idx]).astype(np.float64)
        mu, sd = frames.mean(axis=0), frames.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        for i in idx:
            out[i] = ((seqs[i] - mu) / sd).astype(np.float32)
    return out


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((60, 9)) * rng.uniform(0.1, 50, 9) + rng.uniform(-100, 100, 9)
    x = x.astype(np.float32)
    x[:, 3] = 7.0  # a constant column
    speakers = np.array(list("cabcab") * 10)
    seqs = np.empty(60, dtype=object)
    for i in range(60):
        seqs[i] = (rng.standard_normal((int(rng.integers(2, 12)), 5)) * 3 + 1).astype(np.float32)
    return x, speakers, seqs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluation_features_are_bit_identical_to_the_former_functions(seed):
    x, speakers, seqs = _data(seed)
    old = _old_speaker_zscore(x, speakers)
    for new in (speaker_zscore(x, speakers), SpeakerNormaliser().fit_transform(x, speakers=speakers)):
        assert new.dtype == old.dtype and new.tobytes() == old.tobytes()
    old = _old_speaker_zscore_sequences(seqs, speakers)
    for new in (speaker_zscore_sequences(seqs, speakers),
                SpeakerNormaliser(sequences=True).fit_transform(seqs, speakers=speakers)):
        assert all(a.dtype == b.dtype and a.tobytes() == b.tobytes() for a, b in zip(new, old))


def test_reference_statistics_and_population_fallback_with_warning():
    x, speakers, seqs = _data()
    norm = SpeakerNormaliser().fit(x, speakers=speakers)
    assert norm.n_speakers_ == 3
    np.testing.assert_allclose(norm.mean_, x.astype(np.float64).mean(axis=0))
    ref = x[speakers == "a"]
    z = norm.transform(x[:4], reference=ref)
    mu, sd = ref.astype(np.float64).mean(axis=0), ref.astype(np.float64).std(axis=0)
    np.testing.assert_allclose(z, (x[:4] - mu) / np.where(sd > 0, sd, 1), rtol=1e-5, atol=1e-5)
    # the speaker's own rows as reference give what the per-speaker (evaluation) transform gives
    own = speaker_zscore(x, speakers)[speakers == "a"]
    np.testing.assert_array_equal(norm.transform(ref, reference=ref), own)
    with pytest.warns(PopulationStatisticsWarning):
        z = norm.transform(x[:1])
    np.testing.assert_allclose(z[0], (x[0] - norm.mean_) / norm.scale_, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="at least two"):
        norm.transform(x[:1], reference=x[:1])
    with pytest.raises(ValueError, match="groups"):
        norm.transform(x, speakers=speakers[:3])
    seq_norm = SpeakerNormaliser(sequences=True).fit(seqs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = seq_norm.transform(seqs[:2], reference=seqs[2:5])
    assert [o.shape for o in out] == [s.shape for s in seqs[:2]]
