"""Canonical spellings of EV vocabularies, shared by normalisation (documents) and query
planning (pushdowns), so that an indexed value and a query value always compare equal."""

from __future__ import annotations

import re

# Canonical values follow the ChargingService attribute pack enum (PSV2-rc ConnectorType v2.0).
_CONNECTOR_ALIASES = {
    "ccs2": "CCS2", "ccs": "CCS2", "ccs 2": "CCS2", "ccs_2": "CCS2", "iec_62196_t2_combo": "CCS2",
    "ccs (type 2)": "CCS2", "combo2": "CCS2", "ccs1": "CCS1", "iec_62196_t1_combo": "CCS1",
    "type2": "Type2", "type 2": "Type2", "type_2": "Type2", "iec_62196_t2": "Type2", "mennekes": "Type2",
    "type1": "Type1", "type 1": "Type1", "type_1": "Type1", "iec_62196_t1": "Type1", "j1772": "Type1",
    "chademo": "CHAdeMO",
    "gb_t": "GB_T", "gbt": "GB_T", "gb/t": "GB_T",
    "gbt_ac": "GBT_AC", "gb_t_ac": "GBT_AC", "gbt_dc": "GBT_DC", "gb_t_dc": "GBT_DC",
    "ac-001": "AC-001", "ac001": "AC-001", "bharat ac-001": "AC-001", "ac_001": "AC-001",
    "dc-001": "DC-001", "dc001": "DC-001", "bharat dc-001": "DC-001", "dc_001": "DC-001",
    "15a": "15A", "iec_ac": "IEC_AC", "iec_60309": "IEC_60309", "anderson": "Anderson",
    "type6": "Type6", "type 6": "Type6", "type_6": "Type6",
}


def connector_type(value: object) -> str | None:
    """Canonical connector spelling; unknown spellings pass through unchanged (never dropped)."""
    if not isinstance(value, str):
        return None
    key = re.sub(r"\s+", " ", value.strip()).lower()
    return _CONNECTOR_ALIASES.get(key, value.strip())


_POWER_ALIASES = {
    "ac_single_phase": "AC_SINGLE_PHASE", "ac_1_phase": "AC_SINGLE_PHASE", "ac1": "AC_SINGLE_PHASE",
    "ac_3_phase": "AC_3_PHASE", "ac_three_phase": "AC_3_PHASE", "ac3": "AC_3_PHASE",
    "dc": "DC",
}


def power_type(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return _POWER_ALIASES.get(value.strip().lower(), value.strip())


def vehicle_type(value: object) -> str | None:
    """'4W', '4-wheeler', 'FOUR_WHEELER' -> '4-WHEELER'."""
    if not isinstance(value, str):
        return None
    v = value.strip().upper().replace("_", "-").replace(" ", "-")
    for n, word in (("2", "TWO"), ("3", "THREE"), ("4", "FOUR")):
        if v in (f"{n}W", f"{n}-W", f"{n}-WHEELER", f"{n}WHEELER", f"{word}-WHEELER", f"{word}WHEELER"):
            return f"{n}-WHEELER"
    return v


def upper(value: object) -> str | None:
    """Enum-like fields (chargingSpeed, amenityFeature, tariffModel, payment methods, unit codes)
    are stored upper-cased; queries are compared the same way."""
    return value.strip().upper() if isinstance(value, str) else None
