"""A finished report sealed with its investigation's chain head (§11 ``report_ready.data.proof``).

The JSON report (``format=json``) carries the Markdown report verbatim (``markdown``),
the proof and the server's public key (``signing_key``, a JWK). Besides the fields §11
names, the proof has ``report_json_sha256``: SHA-256 of ``canonical`` of the JSON report
without ``proof`` and ``signing_key``, so the structured fields (summary, anomaly rows)
are signed too and not only what the Markdown shows. It is signed like every other field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from .canonical import canonical, sha256_hex
from .chain import ChainMark
from .signing import Signer

PROOF = "proof"
SIGNING_KEY = "signing_key"
MARKDOWN = "markdown"
UNSIGNED_MEMBERS = frozenset({PROOF, SIGNING_KEY})


@attrs.frozen
class Sealed:
    proof: dict[str, Any]
    json: str  # the JSON report as served, proof included
    markdown: str


def report_json_sha256(report: Mapping[str, Any]) -> str:
    return sha256_hex(canonical({k: v for k, v in report.items() if k not in UNSIGNED_MEMBERS}))


def seal(
    signer: Signer, investigation_id: str, mark: ChainMark, dataset_sha256: str | None,
    report: Mapping[str, Any], markdown: str,
) -> Sealed:
    """``report`` is the JSON report's members (``Report.as_json()``)."""
    # Hash what is served: the members as they read back from JSON text.
    body = json.loads(json.dumps({**report, MARKDOWN: markdown}, ensure_ascii=False))
    proof = signer.sign({
        "chain_head": mark.head,
        "events": mark.events,
        "dataset_sha256": dataset_sha256,
        "report_sha256": sha256_hex(markdown.encode()),
        "report_json_sha256": report_json_sha256(body),
    }, investigation_id)
    served = {**body, PROOF: proof, SIGNING_KEY: signer.jwk()}
    return Sealed(proof, json.dumps(served, ensure_ascii=False), markdown)
