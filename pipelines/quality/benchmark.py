"""How long the quality gate takes: ``python -m pipelines.quality.benchmark EXTRACT [--rows N]``.

Tiles a prepared extract (e.g. the demo's A&E extract under ``$PLACELINK_HOME/demo/outbox``)
to ``--rows`` rows with fresh record tokens, then times :func:`validate_delivery` several
times and prints the median, plus the one-off cost of importing Great Expectations.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import statistics
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.contracts import load_contracts
from pipelines.settings import Settings


def tiled(table: pa.Table, rows: int) -> pa.Table:
    copies = -(-rows // table.num_rows)
    big = pa.concat_tables([table] * copies).slice(0, rows)
    tokens = pa.array([secrets.token_hex(16) for _ in range(rows)])
    return big.set_column(big.schema.get_field_index("record_token"), "record_token", tokens)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extract", type=Path)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    from pipelines.quality.gx_suite import _batch_definition  # noqa: PLC0415 (timed on purpose)
    from pipelines.quality.validate import validate_delivery
    _batch_definition()
    setup = time.perf_counter() - started

    source = pq.read_table(args.extract)
    header = json.loads(source.schema.metadata[b"placelink"])
    contracts, _ = load_contracts(Settings.from_env().contracts_dir)
    contract = contracts[header["contract_id"]]
    table = tiled(source, args.rows)
    timings, cpu = [], []
    for _ in range(args.runs):
        started = time.process_time()
        verdict = validate_delivery(table, contract, header["dataset"], args.extract.name, dt.date.today(),
                                    previous_rows=args.rows)
        cpu.append(time.process_time() - started)
        timings.append(verdict.seconds)
    print(f"{header['dataset']}: {args.rows:,} rows, {len(verdict.results)} rules, outcome {verdict.outcome}")
    print(f"validation: median {statistics.median(timings):.2f} s wall, {statistics.median(cpu):.2f} s CPU "
          f"over {args.runs} runs (wall min {min(timings):.2f}, max {max(timings):.2f})")
    print(f"one-off per process: importing and setting up Great Expectations {setup:.1f} s")


if __name__ == "__main__":
    main()
