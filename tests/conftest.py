"""Shared pytest fixtures. Keep each fixture small and documented; helpers live in their own modules."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_openai_server import FakeOpenAIServer

# --- fake OpenAI-compatible server (tests/fake_openai_server.py) ---------------------------------


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    """A running vLLM-like fake server on 127.0.0.1: ``.base_url``, ``.enqueue()``, ``.requests``."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def fake_openai_factory() -> Iterator[Callable[..., FakeOpenAIServer]]:
    """Start extra fake servers with custom options (``vllm=False``, ``api_key=...``); all stop at teardown."""
    servers: list[FakeOpenAIServer] = []

    def make(**options: Any) -> FakeOpenAIServer:
        server = FakeOpenAIServer(**options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


# --- the bundled GAIA-style task set (benchmarks/gaia_local) -------------------------------------


@pytest.fixture(scope="module")
def gaia_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled task set generated with seed 0 (``<root>/2023/validation/...``), once per test module.

    Module-scoped, not session-scoped, so no test module sees files another one wrote there.
    """
    from benchmarks.gaia_local.generate import generate  # imported here: only the GAIA tests need it

    root = tmp_path_factory.mktemp("gaia_local")
    generate(root, seed=0)
    return root
