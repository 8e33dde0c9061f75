"""A real PostgreSQL (Debian's package) on loopback for the ledger's tests and benchmarks.

Debian installs the server binaries under /usr/lib/postgresql/<major>/bin and refuses to run
them as root, so the cluster is initialised and run as the `postgres` system user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from aiconn.devstack.processes import Proc, ProcessGroup, StackError, free_port, wait_until


def postgres_bin() -> Path:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "postgres").exists():
            return candidate
    raise StackError(
        "PostgreSQL server not found; install Debian's package: apt-get install postgresql"
    )


@dataclass
class PostgresServer:
    group: ProcessGroup
    data_dir: Path
    port: int = 0
    user: str = "aiconn"
    database: str = "aiconn"
    name: str = "postgres"
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _as_postgres(self) -> tuple[int, int] | None:
        if os.geteuid() != 0:
            return None
        entry = pwd.getpwnam("postgres")
        return entry.pw_uid, entry.pw_gid

    def _run(self, argv: list[str]) -> None:
        ids = self._as_postgres()
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            user=ids[0] if ids else None,
            group=ids[1] if ids else None,
        )
        if result.returncode != 0:
            raise StackError(f"{argv[0]} failed: {result.stderr[-2000:]}")

    def start(self, *, timeout: float = 60) -> PostgresServer:
        binaries = postgres_bin()
        if not self.port:
            self.port = free_port()
        ids = self._as_postgres()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if ids:
            shutil.chown(self.data_dir, ids[0], ids[1])
            os.chmod(self.data_dir, 0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run([
                str(binaries / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                "--auth=trust", "--encoding=UTF8", "--no-instructions",
            ])  # fmt: skip
        argv = [
            str(binaries / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
            "-c", "fsync=off", "-c", "max_connections=200",
        ]  # fmt: skip
        if ids:
            argv = ["setpriv", f"--reuid={ids[0]}", f"--regid={ids[1]}", "--init-groups", *argv]
        self.proc = self.group.start(self.name, argv)
        wait_until(self._accepts, timeout=timeout, what="PostgreSQL", proc=self.proc)
        self._create_database()
        return self

    def _accepts(self) -> bool:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname="postgres", connect_timeout=2
        ):
            return True

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        self.group.stop(self.name)
        self.proc = None
