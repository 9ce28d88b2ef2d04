"""Shared fixtures: tiny models built once per test session, and an isolated app directory."""

from __future__ import annotations

import os
import signal
import tempfile

import pytest

# huggingface_hub reads these when it is first imported, so they are set before any test runs:
# the suite never touches the user's Hugging Face cache or the network. Hub tests run the CLI
# in subprocesses with their own values.
_HF_HOME = tempfile.mkdtemp(prefix="mlxdraft-tests-hf-")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("HF_ENDPOINT", None)

from mlxdraft.testkit import build_tiny_family  # noqa: E402 - after the environment above


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return build_tiny_family(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def loaded(tiny):
    """The tiny models loaded once: {"target": ..., "draft": ..., ...}."""
    from mlxdraft.engines import get_engine

    engine = get_engine("mlx-lm")
    load = lambda path: engine.load(engine.resolve(str(path)))  # noqa: E731
    return {
        "target": load(tiny.target),
        "draft": load(tiny.draft),
        "target_qwen": load(tiny.target_qwen),
        "draft_qwen_wide": load(tiny.draft_qwen_wide),
        "other": load(tiny.other_tokenizer),
    }


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Keep every test away from the user's real mlxdraft state and model lists."""
    monkeypatch.setenv("MLXDRAFT_HOME", str(tmp_path / "mlxdraft-home"))
    monkeypatch.delenv("MLXDRAFT_MODEL_LISTS", raising=False)


@pytest.fixture(autouse=True)
def signal_handlers_restored():
    """Each test gets the process's SIGINT and SIGTERM handlers back as they were: a command run in-process
    installs mlxdraft's one-shot handler (files.install_sigterm_handler), and once it has fired it ignores both
    signals, which would leave Ctrl-C dead for every later test."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    yield
    for number, handler in saved.items():
        if handler is not None and signal.getsignal(number) is not handler:
            signal.signal(number, handler)
