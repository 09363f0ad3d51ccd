"""The domain records every part of an investigation shares: contracts and anomalies."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Literal

import attrs

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


DataOrigin = Literal["sample", "file", "memory"]


@attrs.frozen
class PlantedAnomaly:
    """Ground truth kept beside the generated sample, to measure the detectors."""

    anomaly_type: AnomalyType
    contract_ids: tuple[str, ...]
    agency: str = ""
