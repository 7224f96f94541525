"""Training and scoring on a small place: EM without Splink's sampling probe; token ids and Bloom
words score exactly as the tokens and bit strings they stand for."""

import json
import logging

import numpy as np
import pyarrow as pa
import pytest

from pipelines.linkage import model as linkage_model
from pipelines.linkage.model import (
    EM_SAMPLE_FROM_RECORDS,
    _duckdb_records,
    bloom_words,
    dice_on_words,
    predict_clusters,
    train,
)


@pytest.fixture(scope="module")
def records(small_place_person_records):
    return small_place_person_records


def test_a_small_place_trains_without_sampling_warnings(records, caplog):
    assert records.num_rows < EM_SAMPLE_FROM_RECORDS
    with caplog.at_level(logging.INFO, logger="splink"):
        model = train(records)

    sampling = [r.getMessage() for r in caplog.records if "[EM sampling]" in r.getMessage()]
    assert sampling == []
    levels = [
        level
        for comparison in model.splink_settings["comparisons"]
        for level in comparison["comparison_levels"]
        if not level.get("is_null_level")
    ]
    assert levels and all(level.get("m_probability") is not None for level in levels)


@pytest.fixture(scope="module")
def model(records):
    return train(records)


def scored(prediction) -> dict[tuple[str, str], float]:
    return {
        (l, r): p for l, r, p in zip(*(prediction.pairs.column(i).to_pylist() for i in range(3)))
    }


def test_tokens_compared_as_64_bit_ids_score_exactly_as_the_tokens(records, model):
    as_ids = predict_clusters(records, model, 0.9, keep_pairs=True)
    as_text = predict_clusters(records, model, 0.9, keep_pairs=True, token_ids=False)

    assert scored(as_ids).keys() == scored(as_text).keys() and len(scored(as_ids)) > 1000
    assert max(abs(scored(as_ids)[k] - scored(as_text)[k]) for k in scored(as_ids)) < 1e-12
    assert sorted(as_ids.clusters.to_pylist(), key=str) == sorted(
        as_text.clusters.to_pylist(), key=str
    )
    # Splink's scratch table really holds integers, not the 32 hex characters
    _, con, _ = _duckdb_records(records, None)
    try:
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'person_records'"
            ).fetchall()
        )
    finally:
        con.close()
    assert {types[c] for c in types if c.endswith("_token")} == {"UBIGINT"}
    assert types["given_name_bloom"] == "BIT"


def test_a_token_column_whose_ids_would_collide_is_compared_as_text(
    records, model, monkeypatch, caplog
):
    # An id of one bit: every column with more than two distinct tokens has colliding ids.
    monkeypatch.setattr(
        linkage_model,
        "token_id",
        lambda c: f"CASE WHEN {c} IS NULL THEN NULL ELSE hash({c}) % 2 END",
    )
    with caplog.at_level(logging.WARNING, logger="pipelines.linkage.model"):
        prediction = predict_clusters(records, model, 0.9, keep_pairs=True)

    as_text = predict_clusters(records, model, 0.9, keep_pairs=True, token_ids=False)
    assert scored(prediction) == pytest.approx(scored(as_text), abs=1e-12)
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "linkage compares given_name_token as text" in warned
    assert not any(
        t in warned for t in records.column("given_name_token").drop_null().to_pylist()[:50]
    )


def test_scoring_on_64_bit_words_gives_the_pairs_of_scoring_on_bit_strings(
    records, model, monkeypatch
):
    on_words = predict_clusters(records, model, 0.9, keep_pairs=True)
    monkeypatch.setattr(
        linkage_model, "bloom_words", lambda column: None
    )  # no words: BIT throughout
    on_bits = predict_clusters(records, model, 0.9, keep_pairs=True)

    assert (
        scored(on_words) == pytest.approx(scored(on_bits), abs=1e-12)
        and len(scored(on_bits)) > 1000
    )
    assert (
        on_words.match_weights_chart == on_bits.match_weights_chart
    )  # the model itself is unchanged
    assert "bit_count(given_name_bloom_l & given_name_bloom_r)" in json.dumps(model.splink_settings)


def test_bloom_words_keep_the_popcount_of_every_and():
    rng = np.random.default_rng(7)
    filters = [rng.integers(0, 256, 33, dtype=np.uint8).tobytes() for _ in range(40)] + [None]
    words = bloom_words(pa.array(filters, pa.binary()))

    assert len(words) == 5 and all(
        w.null_count == 1 for w in words
    )  # 33 bytes: 4 words and a padded fifth
    as_ints = [[w[i].as_py() for w in words] for i in range(40)]
    for a, b in zip(range(40), reversed(range(40))):
        expected = bin(int.from_bytes(filters[a], "big") & int.from_bytes(filters[b], "big")).count(
            "1"
        )
        assert (
            sum(bin((x & y) % 2**64).count("1") for x, y in zip(as_ints[a], as_ints[b])) == expected
        )
    assert (
        bloom_words(pa.array([b"\x01" * 32, b"\x01" * 16], pa.binary())) is None
    )  # lengths differ: BIT only


def test_only_bloom_bit_counts_are_rewritten_for_words(model):
    rewritten = dice_on_words(
        model.splink_settings, {"given_name_bloom": 5, "family_name_bloom": 5}
    )
    before = [
        l["sql_condition"]
        for c in model.splink_settings["comparisons"]
        for l in c["comparison_levels"]
    ]
    after = [l["sql_condition"] for c in rewritten["comparisons"] for l in c["comparison_levels"]]
    changed = [(b, a) for b, a in zip(before, after) if b != a]
    # the levels that read the given or the family name's filter: the names' own Dice levels, and
    # the transposed levels, which weigh each name's own Dice against the full names'
    reading = [b for b in before if "given_name_bloom_l" in b or "family_name_bloom_l" in b]
    assert len(changed) == len(reading) >= 4
    assert all("bit_count" in b and "_bloom_w4_l & " in a for b, a in changed)
    assert all("bit_count(given_name_bloom_l" not in a for a in after)
    # a filter given no width (here the full name's) keeps its bit count on BIT strings
    full = [a for _, a in changed if "full_name_bloom" in a]
    assert full and all(
        "bit_count(full_name_bloom_l & full_name_bloom_r)" in a.lower() for a in full
    )


def test_training_on_words_saves_the_model_training_on_bit_strings_saves(
    records, model, monkeypatch
):
    monkeypatch.setattr(linkage_model, "bloom_words", lambda column: None)
    on_bits = train(records)

    def levels(settings):
        return [l for c in settings["comparisons"] for l in c["comparison_levels"]]

    assert [l["sql_condition"] for l in levels(model.splink_settings)] == [
        l["sql_condition"] for l in levels(on_bits.splink_settings)
    ]
    for words_level, bits_level in zip(
        levels(model.splink_settings), levels(on_bits.splink_settings)
    ):
        for p in ("m_probability", "u_probability"):
            assert (words_level.get(p) is None) == (bits_level.get(p) is None)
            if bits_level.get(p) is not None:
                assert words_level[p] == pytest.approx(bits_level[p], rel=1e-9)


def test_the_full_name_blocks_read_words_and_the_saved_model_keeps_them_as_defined(model):
    # The blocks "same date of birth (or postcode) and full-name Dice >= 0.7" compute the Dice of
    # every pair born on the same day (living at the same postcode), a number that grows with the
    # square of the place: on BIT strings it was most of scoring at 3M people (issue 24). On words
    # they read the 64-bit words; every other rule is untouched, and the saved model keeps the
    # rules as defined (any backend reads them).
    rules = [
        r["blocking_rule"] for r in model.splink_settings["blocking_rules_to_generate_predictions"]
    ]
    bloom_rules = [r for r in rules if "bit_count" in r]
    assert len(bloom_rules) == 2
    assert all("bit_count(l.full_name_bloom & r.full_name_bloom)" in r for r in bloom_rules)
    rewritten = dice_on_words(model.splink_settings, {"full_name_bloom": 4})
    after = [r["blocking_rule"] for r in rewritten["blocking_rules_to_generate_predictions"]]
    changed = [(b, a) for b, a in zip(rules, after) if b != a]
    assert [b for b, _ in changed] == bloom_rules
    for _, words_rule in changed:
        assert "l.full_name_bloom_w3 & r.full_name_bloom_w3" in words_rule
        assert "l.full_name_bloom & r.full_name_bloom" not in words_rule
    assert "l.date_of_birth_token = r.date_of_birth_token" in changed[0][1]
    assert "l.postcode_token = r.postcode_token" in changed[1][1]


def test_the_filtered_block_first_scores_the_pairs_of_the_rules_as_defined(
    records, model, monkeypatch
):
    # Splink tests each rule's candidates against every earlier rule; the full-name block (every
    # pair born on the same day) goes first so that it has none to test (issue 24). The pairs are
    # the same as with the rules in the order the model defines them.
    scoring = linkage_model.filtered_blocks_first(model.splink_settings)
    first = scoring["blocking_rules_to_generate_predictions"][0]["blocking_rule"]
    assert "bit_count(l.full_name_bloom & r.full_name_bloom)" in first
    assert sorted(map(str, scoring["blocking_rules_to_generate_predictions"])) == sorted(
        map(str, model.splink_settings["blocking_rules_to_generate_predictions"])
    )
    reordered = predict_clusters(records, model, 0.9, keep_pairs=True)
    monkeypatch.setattr(linkage_model, "filtered_blocks_first", lambda settings: settings)
    as_defined = predict_clusters(records, model, 0.9, keep_pairs=True)
    assert scored(reordered) == pytest.approx(scored(as_defined), abs=1e-12)
    assert len(scored(as_defined)) > 1000


def test_bloom_words_are_the_same_whether_the_filters_lie_back_to_back_or_not():
    # Arrow lets a null slot hold bytes; a slice starts part way into the buffer. Either way the
    # words are those of each row's own filter.
    rng = np.random.default_rng(11)
    filters = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(30)]
    filters[4] = filters[17] = None
    packed = pa.array(filters, pa.binary())
    offsets = np.frombuffer(packed.buffers()[1], dtype=np.int32)
    assert offsets[5] == offsets[4]  # the null holds no bytes
    data = b"".join(f if f is not None else b"\xff" * 32 for f in filters)
    spaced = pa.Array.from_buffers(
        pa.binary(),
        len(filters),
        [
            packed.buffers()[0],
            pa.py_buffer(np.arange(0, 33 * 32, 32, dtype=np.int32).tobytes()),
            pa.py_buffer(data),
        ],
    )
    assert spaced.null_count == 2 and spaced[5].as_py() == filters[5]
    for array in (packed, spaced, packed.slice(3), spaced.slice(3)):
        words = bloom_words(array)
        rows = array.to_pylist()
        for i, f in enumerate(rows):
            got = [w[i].as_py() for w in words]
            if f is None:
                assert got == [None] * 4
            else:
                assert got == [
                    int.from_bytes(f[j : j + 8], "little", signed=True) for j in range(0, 32, 8)
                ]


def full_name_blocks(model) -> list[str]:
    return [
        rule["blocking_rule"]
        for rule in model.splink_settings["blocking_rules_to_generate_predictions"]
        if "full_name_bloom" in rule["blocking_rule"]
    ]


def test_a_place_where_many_share_a_date_of_birth_keys_the_full_name_block_on_the_initial(
    records, model, monkeypatch
):
    sharing = linkage_model.pairs_sharing_a_date(records)
    assert sharing > 0
    [date_alone] = [r for r in full_name_blocks(model) if "date_of_birth_token" in r]
    assert "initial" not in date_alone

    monkeypatch.setattr(linkage_model, "DATE_PAIRS_BUDGET", sharing - 1)
    crowded = train(records)
    [with_initial] = [r for r in full_name_blocks(crowded) if "date_of_birth_token" in r]
    assert "l.given_name_initial_token = r.given_name_initial_token" in with_initial
    # The saved model scores with the rules it was trained with.
    assert predict_clusters(records, crowded, 0.9).scored_pairs > 0


def test_calibrating_on_the_pairs_kept_from_the_floor_gives_every_pair_s_threshold(
    records, model, monkeypatch
):
    assert model.threshold is None  # calibrated on this run's scores
    kept = predict_clusters(records, model, None)
    monkeypatch.setattr(linkage_model, "SCORED_FROM_WEIGHT", -np.inf)
    every = predict_clusters(records, model, None)
    assert (kept.threshold, kept.threshold_method) == (every.threshold, every.threshold_method)
    assert "valley" in kept.threshold_method
    assert (
        kept.scored_pairs == every.scored_pairs
        and kept.links_above_threshold == every.links_above_threshold
    )
