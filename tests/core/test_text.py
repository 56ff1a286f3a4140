"""The text analyzer both backends share (docs/decisions.md §25)."""

from __future__ import annotations

from cds.core.documents import ItemDoc, upgrade_terms
from cds.core.text import MAX_QUERY_TERMS, MAX_TERM_CHARS, document_terms, fold, has_terms, query_terms


def test_fold_drops_latin_accents_and_keeps_other_scripts():
    assert fold("Café Déjà Vu Straße") == "cafe deja vu strasse"
    assert fold("चार्जिंग स्टेशन") == "चार्जिंग स्टेशन"          # Devanagari vowel signs are not accents
    assert fold("ÅNGSTRÖM") == "angstrom"


def test_documents_keep_every_word_stemmed_sorted_and_distinct():
    terms = document_terms(["Charging Stations with the Wi-Fi", None, "", "charging station"])
    assert terms == ["charg", "fi", "station", "the", "wi", "with"]
    assert document_terms(["x" * 100]) == ["x" * MAX_TERM_CHARS]


def test_queries_drop_stop_and_filler_words_and_stem_like_documents():
    assert query_terms("Give me all charging stations.") == ("charg", "station")
    assert query_terms("fast dc charging koramangala") == ("fast", "dc", "charg", "koramangala")
    assert query_terms("show me anything nearby, please") == ()
    assert query_terms(None) == () and query_terms("") == ()
    assert query_terms("Chargers CHARGER charger's") == ("charger",)
    assert len(query_terms(" ".join(f"w{i}" for i in range(100)))) == MAX_QUERY_TERMS
    doc = document_terms(["DC Fast Charger - CCS2 (60kW)", "High-speed DC charging station with CCS2 connector"])
    assert has_terms(doc, query_terms("charging stations"))
    assert has_terms(doc, query_terms("60kW CCS2 chargers"))
    assert not has_terms(doc, query_terms("AC charging"))


def test_items_stored_before_terms_get_them_from_their_text_and_amenities():
    old = ItemDoc(bpp_id="b", catalog_id="c", item_id="i", text="dc fast charging station koramangala",
                  amenities=["RESTAURANT", "WI-FI"])
    upgrade_terms(old)
    assert old.text == "" and has_terms(old.terms, query_terms("charging stations near a restaurant"))
    assert has_terms(old.terms, query_terms("Koramangala restaurants"))
    fresh = ItemDoc(bpp_id="b", catalog_id="c", item_id="i", terms=["x"], text="")
    assert upgrade_terms(fresh).terms == ["x"]
