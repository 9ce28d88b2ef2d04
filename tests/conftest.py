"""Shared fixtures: tiny models built once per test session, and an isolated app directory."""

from __future__ import annotations

import pytest

from mlxdraft.testkit import build_tiny_family


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return build_tiny_family(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def loaded(tiny):
    """The tiny models loaded once: {"target": ..., "draft": ..., ...}."""
    from mlxdraft.loading import resolve_and_load

    return {
        "target": resolve_and_load(str(tiny.target)),
        "draft": resolve_and_load(str(tiny.draft)),
        "target_qwen": resolve_and_load(str(tiny.target_qwen)),
        "draft_qwen_wide": resolve_and_load(str(tiny.draft_qwen_wide)),
        "other": resolve_and_load(str(tiny.other_tokenizer)),
    }


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Keep every test away from the user's real caches."""
    monkeypatch.setenv("MLXDRAFT_HOME", str(tmp_path / "mlxdraft-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
