"""What the demo network is made of (docs/decisions.md §G): the payload constants of the UBC publish example
(domain, JSON-LD contexts, spatial targets), the bounds of one generation, the connector types and station
archetypes with their shares, operator brands, parking, availability windows, statuses, payments and the
discover query kinds. Shares are rough shapes of the Indian market, not data.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import NamedTuple


DOMAIN = "beckn.one:deg:ev-charging"
_SPEC = "https://raw.githubusercontent.com/beckn/protocol-specifications-v2/refs/heads/core-v2.0.0-rc/schema"
CORE_CONTEXT = f"{_SPEC}/core/v2/context.jsonld"
SERVICE_CONTEXT = f"{_SPEC}/EvChargingService/v1/context.jsonld"
OFFER_CONTEXT = f"{_SPEC}/EvChargingOffer/v1/context.jsonld"
UBC_GEO_TARGET = "$['beckn:itemAttributes.chargingStation.serviceLocation.geo']"
AVAILABLE_AT_TARGET = "$['beckn:availableAt'][*]['geo']"


IST = timezone(timedelta(hours=5, minutes=30))
MAX_PUBLISH_BYTES = 8 * 1024 * 1024
MAX_CATALOG_CONNECTORS = 2000  # ≈ 5 MB of JSON: one catalog always fits one publish request
MAX_CONNECTORS = 5_000_000
MAX_CPOS = 10_000
MAX_QUERIES = 1_000_000


ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class ConnectorSpec(NamedTuple):
    connector_type: str
    kw: float
    power_type: str
    connector_format: str
    vehicles: tuple[str, ...]
    min_kw: float
    title: str


LEV = ("2-WHEELER", "3-WHEELER")
CAR = ("4-WHEELER",)
# Connector/power mix from CEEW's plug list, OCM samples and the UBC examples (ev-schema §7).
CONNECTORS: dict[str, ConnectorSpec] = {
    "AC-001/3.3": ConnectorSpec("AC-001", 3.3, "AC_SINGLE_PHASE", "SOCKET", LEV, 0.5,
                                "LEV AC Charger - Bharat AC-001 (3.3kW)"),
    "Type6/3.3": ConnectorSpec("Type6", 3.3, "AC_SINGLE_PHASE", "CABLE", LEV, 0.5, "LEV AC Charger - Type 6 (3.3kW)"),
    "15A/3.3": ConnectorSpec("15A", 3.3, "AC_SINGLE_PHASE", "SOCKET", LEV, 0.5, "LEV AC Socket - 15A (3.3kW)"),
    "Type2/7.4": ConnectorSpec("Type2", 7.4, "AC_SINGLE_PHASE", "SOCKET", CAR, 1.4, "AC Charger - Type 2 (7.4kW)"),
    "Type2/11": ConnectorSpec("Type2", 11, "AC_3_PHASE", "SOCKET", CAR, 1.4, "AC Charger - Type 2 (11kW)"),
    "Type2/22": ConnectorSpec("Type2", 22, "AC_3_PHASE", "SOCKET", CAR, 3, "AC Fast Charger - Type 2 (22kW)"),
    "DC-001/15": ConnectorSpec("DC-001", 15, "DC", "CABLE", CAR, 2, "DC Charger - Bharat DC-001 (15kW)"),
    "CCS2/30": ConnectorSpec("CCS2", 30, "DC", "CABLE", CAR, 5, "DC Fast Charger - CCS2 (30kW)"),
    "CCS2/50": ConnectorSpec("CCS2", 50, "DC", "CABLE", CAR, 5, "DC Fast Charger - CCS2 (50kW)"),
    "CCS2/60": ConnectorSpec("CCS2", 60, "DC", "CABLE", CAR, 5, "DC Fast Charger - CCS2 (60kW)"),
    "CCS2/120": ConnectorSpec("CCS2", 120, "DC", "CABLE", CAR, 10, "DC Fast Charger - CCS2 (120kW)"),
    "CCS2/150": ConnectorSpec("CCS2", 150, "DC", "CABLE", CAR, 10, "DC Fast Charger - CCS2 (150kW)"),
    "CCS2/240": ConnectorSpec("CCS2", 240, "DC", "CABLE", CAR, 20, "Ultra-Fast Charger - CCS2 (240kW)"),
    "CCS2/360": ConnectorSpec("CCS2", 360, "DC", "CABLE", CAR, 20, "Ultra-Fast Charger - CCS2 (360kW)"),
    "CHAdeMO/50": ConnectorSpec("CHAdeMO", 50, "DC", "CABLE", CAR, 5, "DC Fast Charger - CHAdeMO (50kW)"),
}
# A station is one archetype; each of its connectors is drawn from the archetype's mix.
ARCHETYPES: dict[str, dict[str, float]] = {
    "lev_hub": {"AC-001/3.3": 0.4, "Type6/3.3": 0.3, "15A/3.3": 0.3},
    "ac_destination": {"Type2/7.4": 0.35, "Type2/11": 0.25, "Type2/22": 0.3, "AC-001/3.3": 0.1},
    "dc_city": {"CCS2/30": 0.15, "CCS2/50": 0.2, "CCS2/60": 0.25, "CHAdeMO/50": 0.1, "Type2/22": 0.2, "DC-001/15": 0.1},
    "dc_hub": {"CCS2/60": 0.2, "CCS2/120": 0.3, "CCS2/150": 0.3, "CCS2/240": 0.1, "CCS2/360": 0.05, "CHAdeMO/50": 0.05},
    "bharat": {"DC-001/15": 0.5, "AC-001/3.3": 0.5},
}
CITY_ARCHETYPES = {"lev_hub": 0.30, "ac_destination": 0.25, "dc_city": 0.30, "dc_hub": 0.07, "bharat": 0.08}
CORRIDOR_ARCHETYPES = {"lev_hub": 0.05, "ac_destination": 0.10, "dc_city": 0.35, "dc_hub": 0.45, "bharat": 0.05}
STATION_SIZES = {2: 0.2, 3: 0.18, 4: 0.16, 5: 0.12, 6: 0.1, 7: 0.08, 8: 0.06, 9: 0.05, 10: 0.05}


BRAND_A = ("Volt", "Urja", "Shakti", "Tez", "Prana", "Surya", "Vayu", "Jyoti", "Amper", "Ojas", "Neel", "Harit",
           "Chakra", "Veer", "Pavan", "Agni", "Indra", "Disha", "Kiran", "Nova", "Zap", "Rapid", "Swift", "Evolve",
           "Elec", "Spark", "Charj", "Plug", "Orbit", "Metro")
BRAND_B = ("Grid", "Charge", "Power", "Mobility", "EV", "Plug", "Point", "Energy", "Hub", "Go", "Drive", "Way",
           "Volt", "Link", "Flow", "Path", "Station", "Dock", "Circuit", "Motion")
LEGAL_FORMS = ("Pvt Ltd", "Ltd", "LLP", "Energy Pvt Ltd", "Mobility Pvt Ltd")
PARKING_SITE = {"OnStreet": "Street Charging", "OffStreet": "Charging Hub", "Basement": "Parking", "Mall": "Mall",
                "FuelStation": "Fuel Station", "Office": "Tech Park", "Hotel": "Hotel"}
CITY_PARKING = {"OnStreet": 0.15, "OffStreet": 0.25, "Basement": 0.1, "Mall": 0.15, "FuelStation": 0.15,
                "Office": 0.12, "Hotel": 0.08}
CORRIDOR_PARKING = {"FuelStation": 0.5, "OffStreet": 0.25, "Hotel": 0.2, "OnStreet": 0.05}
STREETS = ("MG Road", "Ring Road", "Station Road", "Main Road", "Link Road", "Market Road", "Church Street",
           "Nehru Road", "Gandhi Road", "Airport Road", "College Road", "Lake Road")
AMENITIES = ("RESTAURANT", "RESTROOM", "WI-FI", "PARKING")
AMENITY_P = {False: (0.35, 0.5, 0.3, 0.6), True: (0.7, 0.85, 0.25, 0.7)}  # by on-corridor
DAILY_WINDOWS = (("06:00:00", "22:00:00"), ("08:00:00", "20:00:00"), ("07:00:00", "23:00:00"),
                 ("09:00:00", "21:00:00"), ("10:00:00", "22:00:00"))
WINDOW_KINDS = {"24x7": 0.55, "daily": 0.30, "dated": 0.15}  # 24x7 items carry no availabilityWindow
STATUSES = {"Available": 0.7, "Occupied": 0.22, "OutOfService": 0.08}
PAYMENTS = (("UPI", 1.0), ("CREDIT_CARD", 0.7), ("DEBIT_CARD", 0.6), ("WALLET", 0.5), ("BANK_TRANSFER", 0.15),
            ("CASH", 0.1))
QUERY_KINDS = {"radius": 0.4, "qr": 0.25, "time_window": 0.2, "route": 0.15}
POWER_STEPS = (3, 7, 11, 22, 30, 50, 60, 100, 120, 150, 240)
UNIT_KWH = {"unitText": "Kilowatt Hour", "unitCode": "KWH", "unitQuantity": 1}
UNIT_MIN = {"unitText": "minute", "unitCode": "MIN", "unitQuantity": 1}
CATEGORY = {"@type": "schema:CategoryCode", "schema:codeValue": "ev-charging", "schema:name": "EV Charging"}


def charging_speed(kw: float) -> str:
    """Marketing band, consistent with the UBC examples (22 kW AC NORMAL, 60 kW FAST, 120 kW ULTRAFAST)."""
    return "SLOW" if kw < 7 else "NORMAL" if kw < 30 else "FAST" if kw < 100 else "ULTRAFAST"
