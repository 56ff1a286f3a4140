"""cds.trust.subscribers: both record forms read into one Subscriber; domain families (docs/decisions.md §1)."""

from __future__ import annotations

import pytest

from cds.trust.subscribers import domain_family, subscriber_from_record
from tests.trust.test_registry import EV, PUB1


@pytest.mark.parametrize("domain, family", [
    (EV, EV), (EV + ":*", EV), (EV + ":2.0.0", EV), (EV + ":v2", EV), (EV + ":2.0.0-rc1", EV),
    (EV + ":2.0.0:*", EV), ("nic2004:60212", "nic2004:60212"), ("energy", "energy"), (" " + EV + " ", EV),
])
def test_domain_family(domain, family):
    assert domain_family(domain) == family


def test_record_forms():
    camel = subscriber_from_record({"subscriberId": "bpp.x", "role": "bpp", "domain": [EV, "x"], "keyId": "k",
                                    "signingPublicKey": PUB1, "validUntil": "2030-01-01T00:00:00+05:30",
                                    "subscriberUrl": "https://bpp.x"})
    assert (camel.type, camel.domain, camel.domains, camel.key_id, camel.url) == ("BPP", EV, [EV, "x"], "k", "https://bpp.x")
    assert camel.valid_until == 1893456000 - 5.5 * 3600   # 2030-01-01T00:00Z = 1893456000
    assert subscriber_from_record({"subscriber_id": "s", "valid_from": "2030-01-01T00:00:00"}).valid_from == 1893456000
    assert subscriber_from_record({"subscriber_id": "s", "ukId": "u"}).key_id == "u"
