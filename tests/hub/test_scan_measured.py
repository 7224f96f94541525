"""What the identifier scan finds and how often it cries wolf, on text made for it (tests/hub/
scan_corpus.py). The figures in docs/identifier-scan.md come from the same corpus at larger sizes
(``python -m tests.hub.scan_corpus``)."""

import pytest

from tests.hub import scan_corpus as corpus


def test_no_false_alarms_on_case_notes():
    assert corpus.measure(corpus.case_notes(2000)) == {kind: 0 for kind in corpus.KINDS}


@pytest.mark.parametrize(
    "texts, most",
    [
        (corpus.python_docs, 0.002),  # real English prose with code: 0.05% measured
        (lambda: corpus.other_languages(100), 0.01),  # word salad of 13 languages: 0.3% measured
    ],
)
def test_few_false_alarms_on_other_innocuous_text(texts, most):
    values = texts()
    found = corpus.measure(values)
    assert sum(found.values()) <= most * len(values), found


@pytest.mark.parametrize(
    "kind, least",
    [
        ("personal names", 0.85),
        ("NHS numbers", 1.0),
        ("full UK postcodes", 1.0),
        ("UK phone numbers", 1.0),
        ("e-mail addresses", 1.0),
        ("dates of birth", 1.0),
    ],
)
def test_identifiers_as_people_write_them_are_found(kind, least):
    values = corpus.identifying(kind, 300)
    assert corpus.measure(values)[kind] >= least * len(values)
