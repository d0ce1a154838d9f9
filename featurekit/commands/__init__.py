"""The command modules of the ``featurekit`` CLI (the top layer): :mod:`.base` (registry and shared
arguments), :mod:`.deploy` (``train``, ``predict``), :mod:`.distributed` (``cluster``),
:mod:`.encoder` (``encoder convert-whisper-ct2``), :mod:`.store` (``store ls | info | gc``), :mod:`.core`
(corpora, corpus, features, models, extract, evaluate, audit, report, demo); the entry point ``main``
and the parser are in :mod:`featurekit.cli`. A new
subcommand goes in a module here, imported by :func:`featurekit.cli.build_parser`.
"""
