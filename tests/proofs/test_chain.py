"""The pure parts of §11: canonical bytes, the chain, signatures, key files."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

from cidadao_trio.proofs.canonical import canonical
from cidadao_trio.proofs.chain import ChainMark, ProofChain, chain_of, genesis
from cidadao_trio.proofs.keyfile import load_or_create, load_public, private_pem
from cidadao_trio.proofs.signing import Signer, signature_valid

EVENTS = [
    {"type": "investigation_progress", "id": "ab-1", "timestamp": "2026-12-01T10:00:00.000Z",
     "data": {"investigation_id": "INV-2026-001", "message": "Preparando a investigação.", "progress": 0}},
    {"type": "anomaly_detected", "id": "ab-2", "timestamp": "2026-12-01T10:00:01.000Z",
     "data": {"investigation_id": "INV-2026-001", "confidence": 0.91, "details": {"b": 1, "a": "ção"}}},
]  # fmt: skip


def test_the_chain_is_the_one_protocol_section_11_spells_out() -> None:
    h = hashlib.sha256(b"cidadao-trio:INV-2026-001").digest()
    assert genesis("INV-2026-001") == h
    for event in EVENTS:
        text = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        assert canonical(event) == text
        h = hashlib.sha256(h + text).digest()
    assert chain_of("INV-2026-001", EVENTS) == ChainMark(h.hex(), 2, "ab-2")
    assert "ção".encode() in canonical(EVENTS[1])  # UTF-8, not \\u escapes


def test_a_chain_continued_from_its_mark_is_the_same_chain() -> None:
    first = ProofChain("INV-2026-001")
    first.add(EVENTS[0])
    resumed = ProofChain("INV-2026-001", first.mark)  # another process, from the record
    resumed.add(EVENTS[1])
    assert resumed.mark == chain_of("INV-2026-001", EVENTS)
    assert chain_of("INV-2026-002", EVENTS).head != resumed.mark.head  # the id is in h_0


def test_the_signature_covers_every_field_and_the_investigation() -> None:
    signer = Signer.ephemeral()
    proof = signer.sign({"chain_head": "00" * 32, "events": 2, "dataset_sha256": None}, "INV-2026-001")
    assert proof["key_id"] == signer.key_id and signer.jwk()["kid"] == signer.key_id
    assert signature_valid(proof, "INV-2026-001", signer.public)
    assert not signature_valid({**proof, "events": 3}, "INV-2026-001", signer.public)
    assert not signature_valid(proof, "INV-2026-002", signer.public)
    assert not signature_valid(proof, "INV-2026-001", Signer.ephemeral().public)


def test_the_key_file_is_created_once_mode_0600_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "data" / "signing-key.pem"
    key, created = load_or_create(path)
    again, created_again = load_or_create(path)
    assert created and not created_again
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert private_pem(key) == private_pem(again) == path.read_bytes()
    signer = Signer(key)
    for text in (json.dumps({"keys": [signer.jwk()]}).encode(), json.dumps(signer.jwk()).encode(), path.read_bytes()):
        assert load_public(text)[0] == signer.public
