"""What a data team sees when a model is wrong: the file and line, not Dagster's wrapper."""

import dagster as dg
import duckdb
import pytest

from pipelines.orchestration.run import failure_messages
from pipelines.outcomes.sql_models import ModelError, discover, run_model


def test_a_failed_model_run_reports_the_file_and_line(tmp_path):
    path = tmp_path / "publish" / "broken.sql"
    path.parent.mkdir()
    path.write_text("-- description: broken\nSELECT 1 AS a,\n  missing_column AS b\n")
    model = discover(tmp_path)["publish.broken"]

    @dg.asset(name="broken")
    def broken_asset():
        con = duckdb.connect()
        con.execute("CREATE SCHEMA publish")
        run_model(con, model)

    result = dg.materialize([broken_asset], raise_on_error=False)
    assert not result.success
    [message] = failure_messages(result)
    assert f"{path}:3: BinderException" in message and "missing_column" in message


def test_sql_parse_error_at_discovery_names_file_and_line(tmp_path):
    path = tmp_path / "staging" / "bad.sql"
    path.parent.mkdir()
    path.write_text("/*\ndescription: bad\n*/\nSELECT a,\nFROM (SELECT 1 AS a\n")
    with pytest.raises(ModelError, match=r"staging/bad\.sql: SQL error at line \d"):
        discover(tmp_path)
