"""PostgreSQL for the tests: find Debian's server binaries, start a throw-away
cluster (see ``pg_server`` in tests/conftest.py), hand out fresh schemas.

Test modules import from here, never from ``conftest`` (several test directories have
one, and only the first imported would be found).
"""

from __future__ import annotations

import glob
import itertools
import os
import subprocess


def pg_bindir() -> str | None:
    """The newest ``/usr/lib/postgresql/<v>/bin`` with an ``initdb``, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else None


def run_as(cmd: list[str], user: str | None) -> None:
    """Run ``cmd`` (as ``user`` via runuser when given); RuntimeError with its output."""
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"{cmd}: {out.returncode}\n{out.stdout}\n{out.stderr}")


_schema_ids = itertools.count()


def fresh_pg_target(conninfo: str) -> str:
    """A conninfo on a new, empty schema of the test cluster."""
    import psycopg

    name = f"t{os.getpid()}_{next(_schema_ids)}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return f"{conninfo} options='-c search_path={name}'"
