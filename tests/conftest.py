"""Shared fixtures: the real data and models that live beside the project in ``../shared``.

Tests that need them take the fixtures below. When the material is missing they are skipped, or
fail when ``FEATUREKIT_REQUIRE_DATA=1`` (CI sets it, so that a missing corpus cannot pass silently).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


def shared_path(env_var: str, default: Path, what: str) -> Path:
    """``$env_var`` or ``default`` when that directory exists; otherwise skip (or fail) the test.

    Parameters
    ----------
    env_var
        Environment variable that overrides the location.
    default
        Where the material is by default (under ``../shared``).
    what
        Human-readable name for the skip/failure message.
    """
    path = Path(os.environ.get(env_var) or default)
    if path.is_dir():
        return path
    message = (f"{what} not found at {path} (set {env_var} or put it at ../shared/"
               f"{default.relative_to(SHARED).as_posix()})")
    if os.environ.get("FEATUREKIT_REQUIRE_DATA") == "1":
        pytest.fail(f"{message}; FEATUREKIT_REQUIRE_DATA=1 makes this an error")
    pytest.skip(f"{message}; set FEATUREKIT_REQUIRE_DATA=1 to fail instead of skipping")


@pytest.fixture(scope="session")
def emodb_root() -> Path:
    """Berlin Emo-DB (``wav/``, ``erkennung.txt``): ``$FEATUREKIT_EMODB`` or ../shared/data/emodb."""
    return shared_path("FEATUREKIT_EMODB", SHARED / "data" / "emodb", "Emo-DB")


@pytest.fixture(scope="session")
def emovo_root() -> Path:
    """EMOVO (``f1`` .. ``m3`` actor folders of FLAC files): ``$FEATUREKIT_EMOVO`` or ../shared/data/emovo."""
    return shared_path("FEATUREKIT_EMOVO", SHARED / "data" / "emovo", "EMOVO")


@pytest.fixture(scope="session")
def whisper_tiny_dir() -> Path:
    """faster-whisper tiny.en (CTranslate2 Whisper encoder).

    ``$FEATUREKIT_WHISPER_TINY`` or ../shared/models/faster-whisper-tiny.en.
    """
    return shared_path("FEATUREKIT_WHISPER_TINY", SHARED / "models" / "faster-whisper-tiny.en",
                       "faster-whisper tiny.en")
