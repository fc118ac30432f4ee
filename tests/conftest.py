"""Fixtures shared by every test directory.

- ``tests/`` and ``tests/clinical/`` are importable (``pg_cluster``, ``clinical_world``)
  from every test module: the clinical test organisation is the base of the service,
  fleet, security and backup tests.
- ``pg_server``: ONE throw-away PostgreSQL cluster for the whole run, started from
  Debian's server binaries (``/usr/lib/postgresql/<v>/bin``) in a temporary directory,
  listening only on a unix socket there (no TCP), as the ``postgres`` system user when
  the tests run as root (initdb refuses root). Skipped, saying so, only when the
  binaries are missing (CI: ``apt-get install postgresql``, done by scripts/setup.sh).
- ``backend``: a factory of fresh metadata-store locations, parametrised over SQLite
  files and PostgreSQL schemas of that cluster.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
for _p in (_HERE, _HERE / "clinical"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from pg_cluster import fresh_pg_target, pg_bindir, run_as  # noqa: E402


@pytest.fixture(scope="session")
def pg_server():
    """A throw-away PostgreSQL cluster: the libpq conninfo of its ``postgres`` database."""
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries missing (/usr/lib/postgresql/*/bin/initdb): "
                    "apt-get install postgresql")
    import psycopg

    user = None
    root = tempfile.mkdtemp(prefix="vc-pg-")
    if os.geteuid() == 0:
        user = "postgres"
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            pytest.fail("running as root needs the 'postgres' system user to run initdb")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data = os.path.join(root, "data")
    run_as([f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
          "--no-sync"], user)
    opts = (f"-k {root} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=40")
    run_as([f"{bindir}/pg_ctl", "-D", data, "-l", os.path.join(root, "log"), "-w", "-t", "60",
          "-o", opts, "start"], user)
    try:
        conninfo = f"host={root} user=postgres dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SELECT 1")
        yield conninfo
    finally:
        run_as([f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"], user)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    """A factory of fresh store locations on the backend of this parametrisation."""
    if request.param == "sqlite":
        counter = itertools.count()
        return lambda: str(tmp_path / f"clinical{next(counter)}.sqlite")
    conninfo = request.getfixturevalue("pg_server")
    return lambda: fresh_pg_target(conninfo)
