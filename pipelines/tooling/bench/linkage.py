"""`placelink bench linkage`: linkage accuracy on synthetic places, against two baselines.

For each size the benchmark generates a synthetic place, runs every partner's kit
with a fresh linkage key, seals each extract for the hub as partners do (the demo's
key ceremony and deliveries), lands them through the hub's arrival checks, and links
the same identity records three ways:

- **tokens**: the hub's Splink model on the partners' tokens (what production runs);
- **NHS number only**: deterministic matching on the NHS-number token, the common
  practice the issue compares against (records without one stay alone);
- **clear text**: the same Splink model on the partners' clear identifiers, normalised
  by the same partner-kit code, with Jaro-Winkler on the names where the hub has Bloom
  Dice — the upper bound pseudonymisation is measured against. It only exists here:
  the hub never holds clear identifiers.

Scores come from the ground truth (pairwise P/R/F1 over identity records and records,
whole-person metrics, and subgroups: records without an NHS number, the VCS partner,
name-origin groups). It also measures the tokens run's time and peak memory, and
person-key stability: a re-run on unchanged inputs, and a "next month" where about
8% of identity records arrive after the first run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from pipelines.core.settings import REPO_ROOT, Settings
from pipelines.core.warehouse import connect
from pipelines.governance.approvals import load_hub_contracts
from pipelines.governance.audit import hub_audit_log
from pipelines.hub.ingest import receive_inbox
from pipelines.linkage import link_person_records
from pipelines.linkage.accepted_changes import AcceptedChange
from pipelines.linkage.comparisons import FULL_NAME, FULL_NAME_CLEAR
from pipelines.linkage.evaluation import (
    ClusterScores,
    PairwiseScores,
    cluster_scores,
    pairwise_scores,
    pairwise_scores_touching,
)
from pipelines.linkage.model import Prediction, blocked_comparisons, predict_clusters, train
from pipelines.linkage.person_keys import forget_identities
from pipelines.linkage.person_records import LINKAGE_FEATURES, build_person_records, landed_datasets
from pipelines.partner_kit.features import IDENTITY_FEATURES, contract_features
from pipelines.partner_kit.prepare import PreparedExtract
from pipelines.partner_kit.readers import read_raw_extract
from pipelines.partner_kit.tokens import LinkageKey
from pipelines.tooling.bench import empty_work_folder
from pipelines.tooling.bench.linkage_profiles import ClearInputs, full_name_bigrams
from pipelines.tooling.demo import on_delivery_day, partner_deliveries, register_demo_keys
from pipelines.tooling.synth import generate_place
from pipelines.tooling.synth.names import draw_name_pools
from pipelines.tooling.synth.study import DELIVERED_AT

METHODS = ("tokens", "nhs_number_only", "clear_text")
NEW_NEXT_MONTH = 0.08  # share of identity records held back from the first month


# The partner kit's normalisation without the tokenising: clear values.
_ClearInputs = ClearInputs


@contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    """Sample this process's resident memory while the block runs; yields {'peak_mb': ...}."""
    result = {"peak_mb": 0.0}
    stop = threading.Event()
    page = os.sysconf("SC_PAGE_SIZE")

    def sample() -> None:
        while not stop.is_set():
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * page / 2**20
            result["peak_mb"] = max(result["peak_mb"], rss)
            stop.wait(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()


@dataclass
class MethodScores:
    identity_records: PairwiseScores
    records: PairwiseScores
    persons: ClusterScores
    no_nhs_number: PairwiseScores
    vcs: PairwiseScores
    by_name_origin: dict[str, PairwiseScores]


@dataclass
class LinkageBench:
    people: int
    seed: int
    records: int
    identity_records: int
    seconds: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float = 0.0
    scored_pairs: int = 0  # pairs Splink kept at match probability >= 0.5
    blocked: list[tuple[str, int]] = field(default_factory=list)  # (blocking rule, pairs it adds)
    scores: dict[str, MethodScores] = field(default_factory=dict)
    stability: dict[str, float] = field(default_factory=dict)


def _deliver(
    place: Path, outbox: Path, settings: Settings
) -> tuple[Settings, dict, list[PreparedExtract]]:
    """Every partner's kit with a fresh linkage key, each extract sealed for the hub and put in
    its inbox, as in the demo: the hub accepts only sealed envelopes. Returns settings that read
    the contracts with the partners' keys registered, those contracts, and the prepared extracts
    (their record lookups are the partners' own, used for scoring)."""
    settings, signing_keys, hub_public = register_demo_keys(
        settings, echo=lambda *_: None, partner_keys=outbox.parent / "signing-keys"
    )
    contracts, problems = load_hub_contracts(settings)  # signed off by the demo's approvers
    if problems:
        raise RuntimeError("invalid contracts: " + "; ".join(str(e) for e in problems.values()))
    key = LinkageKey.generate()
    sealed = partner_deliveries(
        contracts, place, outbox, key, signing_keys, hub_public, settings.now()
    )
    for s in sealed:
        shutil.copy2(s.envelope_path, settings.inbox / s.envelope_path.name)
    return settings, contracts, [s.prepared for s in sealed]


def _clear_records(
    con: duckdb.DuckDBPyConnection, place: Path, contracts: dict, extracts: list[PreparedExtract]
) -> pa.Table:
    """Splink input for the clear-text baseline: the same identity records as the hub's,
    with clear normalised values in the columns the token model reads (so blocking and
    training are the same), and the names as written in ``<name>_clear``."""
    key = LinkageKey.generate()  # unused: _ClearInputs does not tokenise
    frames = []
    for prepared in extracts:
        dataset, contract = prepared.header.dataset, contracts[prepared.header.contract_id]
        raw = read_raw_extract(place / "raw" / contract.partner_id / f"{dataset}.csv")
        inputs = _ClearInputs(
            raw, partner_id=contract.partner_id, dataset=dataset, key=key, today=DELIVERED_AT.date()
        )
        sent = {f.name for f in contract_features(contract, contract.dataset(dataset))}
        columns = {"record_id": raw["record_id"].cast(pl.String)}
        for name in LINKAGE_FEATURES:
            if name == FULL_NAME:
                columns[FULL_NAME_CLEAR] = (
                    full_name_bigrams(inputs)
                    if name in sent
                    else pl.Series([None] * raw.height, dtype=pl.String)
                )
            elif name.endswith("_bloom"):
                source = name.removesuffix("_bloom")
                values = inputs.rows(source, getattr(inputs, source)) if name in sent else None
                columns[f"{source}_clear"] = (
                    values
                    if values is not None
                    else pl.Series([None] * raw.height, dtype=pl.String)
                )
            elif name in sent:
                columns[name] = IDENTITY_FEATURES[name].rows(inputs)
            else:
                columns[name] = pl.Series([None] * raw.height, dtype=pl.String)
        frame = pl.DataFrame(columns).with_columns(dataset=pl.lit(dataset))
        lookup = pl.read_parquet(prepared.lookup_path).select(
            pl.col("record_id").cast(pl.String), "record_token"
        )
        frames.append(frame.join(lookup, on="record_id", how="inner"))
    clear = pl.concat(frames, how="vertical_relaxed")
    con.register("clear_arrow", clear.to_arrow())
    names = [c for c in clear.columns if c not in ("record_id", "dataset", "record_token")]
    try:
        return con.sql(f"""
            SELECT i.identity_id AS unique_id, any_value(i.partner_id) AS partner_id,
                   {", ".join(f"any_value(c.{n}) AS {n}" for n in names)}
            FROM clear_arrow c JOIN hub.record_identity i USING (dataset, record_token)
            GROUP BY i.identity_id ORDER BY unique_id
        """).to_arrow_table()
    finally:
        con.unregister("clear_arrow")


def clear_reference(clear: pa.Table, settings: Settings) -> Prediction:
    """Bare Splink on the clear-text records (:func:`_clear_records`): trained and scored at the
    hub's threshold, with the hub's temporary folder and memory limit, for the hub's tokens to be
    compared with."""
    model = train(
        clear,
        settings.duckdb_temp,
        name_similarity="clear",
        memory_limit=settings.duckdb_memory_limit,
        token_ids=False,
    )
    return predict_clusters(
        clear,
        model,
        settings.linkage_threshold,
        settings.duckdb_temp,
        memory_limit=settings.duckdb_memory_limit,
        token_ids=False,
    )


def _name_origins(place: Path, seed: int) -> pl.DataFrame:
    """person_id -> the Faker locale whose name pools hold the person's true names
    (given and family name both, else family name), 'mixed' if none does."""
    pools, _ = draw_name_pools(seed)
    people = pl.read_csv(place / "truth" / "people.csv", infer_schema=False).select(
        "person_id", "given_name", "family_name"
    )
    origin = []
    sets = [
        (loc, set(pools.female[i]) | set(pools.male[i]), set(pools.family[i]))
        for i, loc in enumerate(pools.locales)
    ]
    for _, given, family in people.iter_rows():
        both = [loc for loc, g, f in sets if given in g and family in f]
        either = [loc for loc, _, f in sets if family in f]
        origin.append(
            (both or either or ["mixed"])[0] if not (len(both) > 1 and "en_GB" in both) else "en_GB"
        )
    return people.select("person_id").with_columns(name_origin=pl.Series(origin))


def _score(con: duckdb.DuckDBPyConnection, clusters: str, origins: list[str]) -> MethodScores:
    """``clusters``: a table (identity_id, person_key); scored against ``truth_records``."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE scored AS
        SELECT t.*, c.person_key FROM truth_records t JOIN {clusters} c USING (identity_id)
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE scored_identities AS
        SELECT identity_id, mode(person_id) AS person_id, any_value(person_key) AS person_key,
               any_value(partner_id) AS partner_id, bool_or(has_nhs_number) AS has_nhs_number,
               mode(name_origin) AS name_origin
        FROM scored GROUP BY identity_id
    """)
    return MethodScores(
        identity_records=pairwise_scores(con, "scored_identities"),
        records=pairwise_scores(con, "scored"),
        persons=cluster_scores(con, "scored_identities"),
        no_nhs_number=pairwise_scores_touching(con, "scored_identities", "NOT has_nhs_number"),
        vcs=pairwise_scores_touching(con, "scored_identities", "partner_id = 'vcs'"),
        by_name_origin={
            o: pairwise_scores_touching(con, "scored_identities", f"name_origin = '{o}'")
            for o in origins
        },
    )


def _key_changes(before: pl.DataFrame, after: pl.DataFrame) -> tuple[int, int, int, int]:
    """(identity records in both, of which changed key; persons before, of which any record changed key)."""
    joined = before.join(after, on="identity_id", suffix="_after")
    changed = joined.filter(pl.col("person_key") != pl.col("person_key_after"))
    return (
        joined.height,
        changed.height,
        before["person_key"].n_unique(),
        changed["person_key"].n_unique(),
    )


def _reset_keys(con: duckdb.DuckDBPyConnection) -> None:
    """Forget every key issued so far, as on a new hub. The tables are emptied, not dropped: the
    warehouse's schema is created once by its migrations when it opens, and the key stages
    expect it (dropping them made the next-month step fail on a missing register)."""
    for table in ("person_keys", "person_key_register", "person_key_events", "linkage_runs"):
        con.execute(f"DELETE FROM hub.{table}")


BENCH_MARKER = ".placelink-bench"


def run_linkage_bench(people: int, seed: int, work: Path, echo=print) -> LinkageBench:
    """Run the whole benchmark in ``work`` (emptied first if an earlier benchmark left it)."""
    empty_work_folder(work, BENCH_MARKER, "linkage")
    place = work / "place"
    echo(f"[{people:,} people] generating the synthetic place ...")
    generate_place(people=people, seed=seed, out=place)
    echo(f"[{people:,} people] partners prepare and seal their extracts ...")
    settings = on_delivery_day(
        dataclasses.replace(
            Settings.from_env({"PLACELINK_HOME": str(work / "hub")}),
            contracts_dir=REPO_ROOT / "contracts",
        )
    )
    settings.ensure_dirs()
    settings, contracts, extracts = _deliver(place, work / "outbox", settings)
    # Opening the envelopes is part of ingest, before any timed step: the linkage times
    # below are linkage only, comparable with clear-text Splink.
    con = connect(settings)
    receipts = receive_inbox(
        settings, con, contracts, {}, hub_audit_log(settings), erase_identities=forget_identities
    )
    held = [r for r in receipts if r.status != "accepted"]
    if held:
        # Scores over a partial landing would not compare with the baselines: stop here.
        reasons = "; ".join(r.reason or r.file_name for r in held)
        raise RuntimeError(
            f"the hub held {len(held)} of {len(receipts)} benchmark extract(s) in "
            f"{settings.quarantine}: {reasons}"
        )
    counts = build_person_records(con, landed_datasets(con, contracts, settings.today()))
    bench = LinkageBench(people, seed, counts["records"], counts["identity_records"])

    echo(
        f"[{people:,} people] linking {counts['identity_records']:,} identity records on tokens ..."
    )
    started = time.perf_counter()
    with peak_rss() as memory:
        result = link_person_records(con, settings, retrain=True)
    bench.seconds["tokens: train, link, keys, QA"] = time.perf_counter() - started
    bench.peak_memory_mb = memory["peak_mb"]
    bench.scored_pairs = result.scored_pairs
    con.execute("CREATE OR REPLACE TABLE bench_tokens AS SELECT * FROM hub.person_keys")
    bench.blocked = blocked_comparisons(
        con.sql("SELECT * FROM hub.person_records").to_arrow_table(), settings.duckdb_temp
    )

    con.execute("""
        CREATE OR REPLACE TABLE bench_nhs_number_only AS
        SELECT unique_id AS identity_id, coalesce(nhs_number_token, unique_id) AS person_key
        FROM hub.person_records
    """)

    echo(f"[{people:,} people] linking the same records on clear text (baseline) ...")
    started = time.perf_counter()
    prediction = clear_reference(_clear_records(con, place, contracts, extracts), settings)
    bench.seconds["clear text: train, link"] = time.perf_counter() - started
    con.register("clear_clusters", prediction.clusters)
    con.execute(
        "CREATE OR REPLACE TABLE bench_clear_text AS SELECT unique_id AS identity_id, "
        "CAST(cluster_id AS VARCHAR) AS person_key FROM clear_clusters"
    )
    con.unregister("clear_clusters")

    echo(f"[{people:,} people] scoring against the ground truth ...")
    origins = _name_origins(place, seed)
    con.register("origins_arrow", origins.to_arrow())
    union = " UNION ALL ".join(
        f"SELECT '{p.header.dataset}' AS dataset, CAST(record_id AS VARCHAR) AS record_id, record_token "
        f"FROM read_parquet('{p.lookup_path}')"
        for p in extracts
    )
    con.execute(
        f"""
        CREATE OR REPLACE TABLE truth_records AS
        SELECT t.person_id, ri.identity_id, ri.partner_id, pr.nhs_number_token IS NOT NULL AS has_nhs_number,
               coalesce(o.name_origin, 'mixed') AS name_origin
        FROM read_csv(?, all_varchar = true) t
        JOIN ({union}) l ON l.dataset = t.source AND l.record_id = t.record_id
        JOIN hub.record_identity ri ON ri.dataset = l.dataset AND ri.record_token = l.record_token
        JOIN hub.person_records pr ON pr.unique_id = ri.identity_id
        LEFT JOIN origins_arrow o ON o.person_id = t.person_id
    """,
        [str(place / "truth" / "ground_truth.csv")],
    )
    con.unregister("origins_arrow")
    groups = [
        g
        for (g,) in con.execute(
            "SELECT DISTINCT name_origin FROM truth_records ORDER BY 1"
        ).fetchall()
    ]
    for method in METHODS:
        bench.scores[method] = _score(con, f"bench_{method}", groups)

    echo(f"[{people:,} people] person-key stability ...")
    before = con.sql("SELECT identity_id, person_key FROM hub.person_keys").pl()
    link_person_records(con, settings)
    after = con.sql("SELECT identity_id, person_key FROM hub.person_keys").pl()
    _, changed, _, _ = _key_changes(before, after)
    bench.stability["unchanged inputs: identity records with a changed key"] = changed
    # Next month: start again with ~8% of identity records held back, then add them.
    con.execute("CREATE OR REPLACE TABLE bench_all_records AS SELECT * FROM hub.person_records")
    _reset_keys(con)
    con.execute(f"""
        CREATE OR REPLACE TABLE hub.person_records AS SELECT * FROM bench_all_records
        WHERE hash(unique_id || '{seed}') % 1000 >= {int(NEW_NEXT_MONTH * 1000)}
    """)
    link_person_records(con, settings)
    month1 = con.sql("SELECT identity_id, person_key FROM hub.person_keys").pl()
    con.execute("CREATE OR REPLACE TABLE hub.person_records AS SELECT * FROM bench_all_records")
    started = time.perf_counter()
    # The 8% held back move the link rate; the benchmark measures key stability, not the check, so
    # the move is accepted (keys are saved only by a run whose check passes).
    link_person_records(
        con,
        settings,
        accepted=[AcceptedChange("bench", "bench", "next month's records", None, None)],
    )
    bench.seconds["tokens: link next month with the saved model"] = time.perf_counter() - started
    month2 = con.sql("SELECT identity_id, person_key FROM hub.person_keys").pl()
    both, changed, persons, persons_changed = _key_changes(month1, month2)
    bench.stability.update(
        {
            "next month: new identity records": bench.identity_records - month1.height,
            "next month: existing identity records with a changed key": changed,
            "next month: share of existing identity records with a changed key": changed / both
            if both
            else 0.0,
            "next month: share of existing persons whose key changed": (
                persons_changed / persons if persons else 0.0
            ),
        }
    )
    con.close()
    return bench


def _fmt(s: PairwiseScores) -> str:
    return f"P {s.precision:.4f}  R {s.recall:.4f}  F1 {s.f1:.4f}"


def format_bench(bench: LinkageBench) -> str:
    lines = [
        f"Linkage benchmark: {bench.people:,} people (seed {bench.seed}), {bench.records:,} records, "
        f"{bench.identity_records:,} identity records"
    ]
    total = sum(n for _, n in bench.blocked)
    lines.append(
        f"  blocking: {total:,} comparisons ({total / max(1, bench.identity_records):.1f} per identity "
        f"record); {bench.scored_pairs:,} pairs at match probability >= 0.5"
    )
    lines += [f"    + {n:>12,}  {rule}" for rule, n in bench.blocked]
    label = {
        "tokens": "tokens (hub)",
        "nhs_number_only": "NHS number only",
        "clear_text": "clear text",
    }
    rows = [
        ("identity records", lambda m: m.identity_records),
        ("records", lambda m: m.records),
        ("no NHS number", lambda m: m.no_nhs_number),
        ("VCS partner", lambda m: m.vcs),
    ]
    origins = sorted(next(iter(bench.scores.values())).by_name_origin)
    rows += [(f"name origin {o}", lambda m, o=o: m.by_name_origin[o]) for o in origins]
    lines.append(
        f"  {'pairwise, pairs touching':26}" + "".join(f"{label[m]:>36}" for m in bench.scores)
    )
    for name, get in rows:
        n = get(next(iter(bench.scores.values()))).records
        lines.append(
            f"  {name + f' ({n:,})':26}"
            + "".join(f"{_fmt(get(s)):>36}" for s in bench.scores.values())
        )
    lines.append(
        f"  {'whole persons exact':26}"
        + "".join(
            f"{f'recall {s.persons.exact_recall:.4f} precision {s.persons.exact_precision:.4f}':>36}"
            for s in bench.scores.values()
        )
    )
    lines.append(
        f"  {'persons split / merged':26}"
        + "".join(
            f"{f'{s.persons.split_persons:,} / {s.persons.merged_persons:,}':>36}"
            for s in bench.scores.values()
        )
    )
    for what, seconds in bench.seconds.items():
        lines.append(f"  time {what}: {seconds:.1f} s")
    lines.append(
        f"  peak memory (resident, whole process) during the tokens run: {bench.peak_memory_mb:,.0f} MB"
    )
    for what, value in bench.stability.items():
        lines.append(
            f"  {what}: {value:.4%}" if isinstance(value, float) else f"  {what}: {value:,}"
        )
    return "\n".join(lines)


def bench_to_json(bench: LinkageBench) -> dict:
    def scores(s: PairwiseScores) -> dict:
        return {**asdict(s), "precision": s.precision, "recall": s.recall, "f1": s.f1}

    return {
        "people": bench.people,
        "seed": bench.seed,
        "records": bench.records,
        "identity_records": bench.identity_records,
        "scored_pairs": bench.scored_pairs,
        "blocked_comparisons": dict(bench.blocked),
        "seconds": bench.seconds,
        "peak_memory_mb": bench.peak_memory_mb,
        "stability": bench.stability,
        "methods": {
            m: {
                "identity_records": scores(s.identity_records),
                "records": scores(s.records),
                "no_nhs_number": scores(s.no_nhs_number),
                "vcs": scores(s.vcs),
                "by_name_origin": {o: scores(v) for o, v in s.by_name_origin.items()},
                "persons": {
                    **asdict(s.persons),
                    "exact_recall": s.persons.exact_recall,
                    "exact_precision": s.persons.exact_precision,
                },
            }
            for m, s in bench.scores.items()
        },
    }


def run_benchmarks(
    sizes: list[int], seed: int, work: Path | None, out: Path | None, echo=print
) -> list[LinkageBench]:
    results = []
    for people in sizes:
        folder = (
            Path(tempfile.mkdtemp(prefix=f"placelink-bench-linkage-{people}-"))
            if work is None
            else work / f"people-{people}"
        )
        try:
            bench = run_linkage_bench(people, seed, folder, echo)
        finally:
            if work is None:
                shutil.rmtree(folder, ignore_errors=True)
        echo(format_bench(bench))
        results.append(bench)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps([bench_to_json(b) for b in results], indent=2))
    echo(
        f"(process peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB)"
    )
    return results
