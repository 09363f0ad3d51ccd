"""The domain records every part of an investigation shares: contracts, anomalies and the
investigation's own status record with its phases (PROTOCOL.md §3.2)."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from ..proofs.chain import ChainMark
from ..protocol.envelope import utc_timestamp
from ..records.convert import converter

AnomalyType = Literal[
    "price_deviation",
    "supplier_concentration",
    "spending_spike",
    "duplicate_contract",
    "contract_splitting",
    "value_divergence",
]
Severity = Literal["low", "medium", "high", "critical"]


@attrs.frozen
class Contract:
    """One federal contract, as the Portal da Transparência describes it."""

    id: str  # "numero" (or the API id); unique within a dataset
    agency: str  # órgão máximo, e.g. "Ministério da Saúde"
    supplier_name: str
    supplier_cnpj: str  # 14 digits, no punctuation
    object: str  # "objeto": what was bought, free text in Portuguese
    category: str  # purchase category used for peer groups ("" when unknown)
    initial_value: float  # valorInicial, BRL
    global_value: float  # valorGlobal, BRL (after amendments)
    signed_on: dt.date  # dataAssinatura
    quantity: float | None = None
    unit_price: float | None = None
    modality: str = ""  # modalidadeCompra, e.g. "Pregão", "Dispensa de Licitação"
    status: str = ""  # situacaoContrato
    # What real portal rows also carry; "" / None when the source does not say.
    number: str = ""  # the contract number as published (restarts in every UG)
    ug: str = ""  # código da unidade gestora (SIAFI), e.g. "250005"
    ug_name: str = ""  # nome da UG, e.g. "HOSPITAL FEDERAL DE BONSUCESSO"
    body: str = ""  # nome do órgão (subordinate body), e.g. "Fundação Nacional de Saúde"
    body_code: str = ""  # código do órgão (SIAFI)
    agency_code: str = ""  # código do órgão superior (SIAFI), e.g. "36000"
    legal_basis: str = ""  # fundamento legal, e.g. "Lei 14.133/2021, Art. 75, II"
    bidding: str = ""  # número da licitação / ata it came from (siblings share it)
    process: str = ""  # número do processo
    published_on: dt.date | None = None  # data de publicação no DOU
    starts_on: dt.date | None = None  # início da vigência
    ends_on: dt.date | None = None  # fim da vigência
    final_known: bool = True  # False when the source gave no (or a 0,00) final value
    item_code: str = ""  # código do item de compra (CATMAT/CATSER), from the item file


@attrs.frozen
class Anomaly:
    """Something a detector found, explained so a citizen understands it."""

    anomaly_type: AnomalyType
    severity: Severity
    confidence: float  # 0..1
    description: str  # Portuguese, e.g. "Preço 300% acima da mediana de 42 contratos semelhantes"
    contract_ids: tuple[str, ...]
    details: Mapping[str, Any] = attrs.field(factory=dict)  # contract_id, expected_value, ...


DataOrigin = Literal["sample", "file", "memory", "api"]  # api: fetched while investigating


@attrs.frozen
class PlantedAnomaly:
    """Ground truth kept beside the generated sample, to measure the detectors."""

    anomaly_type: AnomalyType
    contract_ids: tuple[str, ...]
    agency: str = ""


class InvestigationStatus(enum.StrEnum):
    """The phases of PROTOCOL.md §3.2; the values are the wire's ``status``."""

    INITIALIZING = "initializing"
    DATA_RETRIEVAL = "data_retrieval"
    ANOMALY_DETECTION = "anomaly_detection"
    FORENSIC_ENRICHMENT = "forensic_enrichment"
    SUMMARY_GENERATION = "summary_generation"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RUNNING = "running"  # run by a backend through the server API (§8): its phases are its own

    @property
    def finished(self) -> bool:
        return self in _ENDINGS

    @property
    def label(self) -> str:
        return PHASES[self].label


@attrs.frozen
class Phase:
    """Where a phase starts on the progress bar and how a citizen is told of it."""

    progress: int | None  # None: an ending that keeps the progress it was reached at
    label: str  # Portuguese, after "a investigação está ..."


PHASES: Mapping[InvestigationStatus, Phase] = {
    InvestigationStatus.INITIALIZING: Phase(0, "preparando"),
    InvestigationStatus.DATA_RETRIEVAL: Phase(10, "carregando os contratos"),
    InvestigationStatus.ANOMALY_DETECTION: Phase(30, "procurando anomalias"),
    InvestigationStatus.FORENSIC_ENRICHMENT: Phase(70, "analisando padrões"),
    InvestigationStatus.SUMMARY_GENERATION: Phase(90, "escrevendo o relatório"),
    InvestigationStatus.COMPLETED: Phase(100, "concluída"),
    InvestigationStatus.FAILED: Phase(None, "falhou"),
    InvestigationStatus.CANCELLED: Phase(None, "cancelada"),
    InvestigationStatus.RUNNING: Phase(0, "em andamento"),
}

_ENDINGS = frozenset({InvestigationStatus.COMPLETED, InvestigationStatus.FAILED, InvestigationStatus.CANCELLED})


def phase_progress(status: InvestigationStatus) -> int:
    """The progress a running phase starts at (endings have none of their own)."""
    progress = PHASES[status].progress
    assert progress is not None, f"{status} keeps the progress it ended at"
    return progress


@attrs.frozen
class Investigation:
    """The status record of one investigation, as served and persisted."""

    id: str
    title: str
    scope: str
    owner_key: str
    public: bool
    status: InvestigationStatus = attrs.field(default=InvestigationStatus.INITIALIZING, converter=InvestigationStatus)
    progress: int = 0
    records_processed: int = 0
    anomalies_detected: int = 0
    created_at: str = attrs.field(factory=utc_timestamp)
    updated_at: str = attrs.field(factory=utc_timestamp)
    summary: Mapping[str, Any] | None = None
    reason: str | None = None
    node: str = ""  # the server that runs it (several share a Redis store)
    chain: ChainMark | None = None  # its events' hash chain so far (§11); None in older records
    external: bool = False  # run by a backend, its events published through the server API (§8)

    @property
    def finished(self) -> bool:
        return self.status.finished

    def to_json(self) -> dict[str, Any]:
        """The stored form (owner included): see :func:`public_view` for what is shown."""
        shown: dict[str, Any] = converter.unstructure(self)
        return shown


PRIVATE_FIELDS = frozenset({"owner_key"})  # whose it is is never shown (§6)


def public_view(investigation: Investigation) -> dict[str, Any]:
    """What anyone allowed to see an investigation is shown: its record minus whose it is."""
    return {k: v for k, v in investigation.to_json().items() if k not in PRIVATE_FIELDS}
