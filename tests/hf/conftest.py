"""A tiny Hugging Face model built from a config (no weights from the network): a 2-layer BERT (hidden 128, 8,000-entry vocabulary)
with a WordPiece tokenizer trained here on the shipped SMS texts, saved with save_pretrained
(``impactflow.models.hf.build_tiny``)."""

from __future__ import annotations

import pytest


def sms_texts() -> list[str]:
    from impactflow.data_contracts import get_contract, load_dataset

    contract = get_contract("sms_spam")
    return load_dataset(contract)[dict(contract.roles_extra)["text"]].astype(str).tolist()


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory):
    """The directory of the tiny model (built once per test session)."""
    from impactflow.models.hf import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny-bert"), sms_texts())
