"""A small, hand-made dataset with known anomalies, for engine and flow tests."""

from __future__ import annotations

import datetime as dt

from cidadao_trio.investigations.model import Contract

HEALTH = "Ministério da Saúde"
EDUCATION = "Ministério da Educação"


def contract(n: int, agency: str, unit_price: float, *, quantity: int = 10, global_factor: float = 1.0) -> Contract:
    value = unit_price * quantity
    return Contract(
        id=f"CT-2025-{n:06d}",
        agency=agency,
        supplier_name=f"Fornecedor {n % 7} Ltda",
        supplier_cnpj=f"{11222333000100 + n % 7:014d}",
        object=f"Aquisição de {quantity} unidades de notebook para unidade {n} em cidade {n * 7}",
        category="notebook",
        initial_value=value,
        global_value=round(value * global_factor, 2),
        signed_on=dt.date(2025, 1 + n % 12, 1 + n % 27),
        quantity=quantity,
        unit_price=unit_price,
        modality="Pregão Eletrônico",
        status="Ativo",
    )


def small_dataset() -> tuple[Contract, ...]:
    """40 notebooks per ministry at ~R$ 4.000; CT-2025-000007 costs five times that,
    and CT-2025-000013's final value doubled its initial one."""
    contracts = []
    for n in range(1, 81):
        agency = HEALTH if n <= 40 else EDUCATION
        price = 4000.0 + (n % 9) * 50
        if n == 7:
            price = 20000.0
        contracts.append(contract(n, agency, price, global_factor=2.0 if n == 13 else 1.0))
    return tuple(contracts)
