"""The reference data the rules read: the standard level and the funeral multiplier by month,
loaded once into a new store and changed (possibly back-dated) by `ledger rates set`."""

from __future__ import annotations

from ledger.aggregates import REFERENCE_DATA_ID, ReferenceDataHistory
from ledger.reference import default_funeral_multipliers, default_standard_levels
from ledger.service_layer.common import check_month
from ledger.service_layer.ports import Ports


def ensure_reference_data(ports: Ports) -> None:
    """Load the built-in reference data into a store that has none (several processes may
    open a new store at once: one of them loads it)."""
    if ports.events.get(REFERENCE_DATA_ID) is None:
        ports.events.save_new(
            ReferenceDataHistory(
                standard_levels=default_standard_levels(),
                funeral_multipliers=default_funeral_multipliers(),
                actor="ledger",
                source="reference_data/standard_levels.csv, funeral_multipliers.csv",
            )
        )


def set_reference_data(
    ports: Ports,
    from_month: str,
    actor: str,
    amount: int | None = None,
    multiplier: int | None = None,
) -> None:
    """A new standard level and/or funeral multiplier from a month on."""
    check_month(from_month, "--from")
    history: ReferenceDataHistory | None = ports.events.get(REFERENCE_DATA_ID)
    if history is None:  # every store is opened with it loaded
        raise RuntimeError("the store holds no reference data")
    history.change(from_month, actor, "ledger rates set", amount, multiplier)
    ports.save(history)
