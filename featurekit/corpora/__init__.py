"""Corpus adapters: each reads a corpus directory into a manifest DataFrame."""

from featurekit.corpora import (  # noqa: F401  (registers)
    cremad,
    csv_manifest,
    emodb,
    emovo,
    iemocap,
    msppodcast,
    ravdess,
    savee,
    synthetic,
    tess,
)
from featurekit.corpora.base import (
    CORPORA,
    CorpusLayoutError,
    corpus_summary,
    finalize_manifest,
    load_corpus,
    validate_manifest,
)

__all__ = ["CORPORA", "CorpusLayoutError", "corpus_summary", "finalize_manifest", "load_corpus",
           "validate_manifest"]
