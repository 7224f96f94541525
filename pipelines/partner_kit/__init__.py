"""The partner kit: runs on a partner's own machine and turns a raw extract into a
pseudonymised extract the hub may receive under the partner's contract.

Steps, each in its own module: ``readers`` (read and check the raw file against the
contract), ``normalise`` (one spelling per identifier), ``tokens`` (keyed HMAC
tokens), ``bloom`` (keyed Bloom filters of names), ``features`` (which hub column is
made of what) and ``prepare`` (the whole run, writing the hub file, the partner-only
lookup and the counts report). No Dagster imports: plain library code.
"""

from pipelines.partner_kit.errors import PartnerKitError
from pipelines.partner_kit.prepare import PreparedExtract, prepare_extract
from pipelines.partner_kit.tokens import LinkageKey, tokenise

__all__ = ["LinkageKey", "PartnerKitError", "PreparedExtract", "prepare_extract", "tokenise"]
