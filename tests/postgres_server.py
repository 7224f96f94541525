"""A throwaway PostgreSQL server for the deployment tests: a new cluster (initdb) in a temporary
folder, listening on a free port on 127.0.0.1 only, stopped and deleted afterwards.

PostgreSQL refuses to run as root; when the tests do (CI, this machine), the cluster is made and
run by the `postgres` user that Debian's postgresql package creates (the Makefile installs it).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.alert_servers import free_port

USER, PASSWORD, DATABASE = "placelink", "test-only-password", "placelink_dagster"


def postgres_bin() -> Path:
    found = shutil.which("pg_ctl") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))), None
    )
    if not found:
        raise RuntimeError(
            "PostgreSQL's server programs (initdb, pg_ctl) are not installed: `make test` "
            "installs Debian's postgresql package, or run `apt-get install postgresql`"
        )
    return Path(os.path.realpath(found)).parent


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str = USER
    password: str = PASSWORD
    database: str = DATABASE

    def env(self) -> dict[str, str]:
        """The PLACELINK_DAGSTER_PG_* variables deploy/dagster.yaml reads."""
        return {
            "PLACELINK_DAGSTER_PG_HOST": self.host,
            "PLACELINK_DAGSTER_PG_PORT": str(self.port),
            "PLACELINK_DAGSTER_PG_USER": self.user,
            "PLACELINK_DAGSTER_PG_PASSWORD": self.password,
            "PLACELINK_DAGSTER_PG_DB": self.database,
        }

    def connect(self):
        import psycopg2

        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=self.database,
        )


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    binaries = postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="placelink-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(folder, account.pw_uid, account.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()
    password_file = folder / "password"
    password_file.write_text(PASSWORD + "\n")
    if as_postgres:
        os.chown(password_file, account.pw_uid, account.pw_gid)

    def run(*command: str) -> None:
        subprocess.run(
            [*as_postgres, *command], check=True, capture_output=True, text=True, timeout=120
        )

    try:
        run(
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-U",
            USER,
            f"--pwfile={password_file}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-sync",
        )
        # -w: pg_ctl returns once the server accepts connections (no sleeping and polling here)
        run(
            str(binaries / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-t",
            "60",
            "-l",
            str(folder / "server.log"),
            "-o",
            f"-p {port} -h 127.0.0.1 -k {folder} -c fsync=off",
            "start",
        )
        try:
            import psycopg2

            admin = psycopg2.connect(
                host="127.0.0.1", port=port, user=USER, password=PASSWORD, dbname="postgres"
            )
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {DATABASE}")
            admin.close()
            yield Postgres("127.0.0.1", port)
        finally:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-w", "-m", "fast", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
