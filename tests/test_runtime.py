"""Library calls write no progress bars unless asked (scripts and notebooks stay clean)."""

from __future__ import annotations

import pytest
import torch

from geoloc_lib.core.runtime import resolve_progress, terminal_progress
from geoloc_lib.eval import evaluate_university1652


def _evaluate() -> None:
    feats = torch.nn.functional.normalize(torch.randn(12, 8, generator=torch.Generator()), dim=1)
    labels = torch.arange(12) % 4
    evaluate_university1652(feats, feats[:4], labels, torch.arange(4), chunk_size=2)


def test_library_calls_are_quiet_by_default(capfd, monkeypatch):
    monkeypatch.delenv("GEOLOC_PROGRESS", raising=False)
    _evaluate()
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_progress_when_asked(capfd, monkeypatch):
    monkeypatch.setenv("GEOLOC_PROGRESS", "1")
    _evaluate()
    assert "ranking" in capfd.readouterr().err


@pytest.mark.parametrize(
    ("given", "env", "expected"), [(None, "", False), (None, "1", True), (False, "1", False)]
)
def test_resolve_progress(monkeypatch, given, env, expected):
    monkeypatch.setenv("GEOLOC_PROGRESS", env)
    assert resolve_progress(given) is expected


def test_terminal_progress_is_off_when_redirected_or_quiet():
    # pytest captures stderr, so it is not a terminal here
    assert terminal_progress() is False
    assert terminal_progress(quiet=True) is False
