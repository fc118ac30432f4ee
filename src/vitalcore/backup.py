"""Online backup and verified restore of a vitalcore installation.

``python -m vitalcore backup --data DIR OUT`` copies, while the server runs and ingests,

- the store (``DIR``): the checkpoint, the stream sequence state, the write-ahead log,
  the Parquet history up to the checkpoint and the alarm log (``DIR/alarms``);
- the accounts file (``--accounts``), if given;
- the clinical metadata (``--clinical``): SQLite through its online backup API (a
  transactionally consistent copy), PostgreSQL with ``pg_dump --format=custom``,

into a directory ``OUT`` or, if ``OUT`` ends in ``.tar.zst``, a zstd-compressed tar, with
``manifest.json`` holding the size and SHA-256 of every file. The output appears under its
final name only when complete.

Consistency of the store copy (no lock is shared with the server, which may run in
another process): the backup reads ``checkpoint.json`` (LSN ``C``), then
``streams.npz``, the WAL segments and every Parquet file whose LSN range ends at or before
``C``, then reads ``checkpoint.json`` again. The store deletes WAL segments and writes
new Parquet files only after replacing the checkpoint, so an unchanged checkpoint proves
that the copied WAL still holds every record after ``C``; a changed one (a flush ran)
repeats the WAL copy (Parquet files already copied are immutable and kept). Restoring
is then a crash recovery: the WAL is replayed from ``C``; a record being written during
the copy may be torn at the end of the last segment and is cut, but every record that
was durable when the backup started is complete. Hence the guarantee: **every frame
acknowledged before the backup started is in the restored store, exactly once.**

``python -m vitalcore restore BACKUP --data NEWDIR`` checks every file against the
manifest before anything is written (a corrupted or incomplete backup is refused with
:class:`~vitalcore.errors.StorageError` naming the file), restores onto an empty data
directory, opens the restored store (WAL replay, then a flush to Parquet) and reports
what it holds. See docs/backup.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import StorageError, UsageError, VitalcoreError
from .storage.fsync import sync_fd, sync_path

__all__ = ["FORMAT", "VERSION", "backup", "verify", "restore", "main"]

FORMAT = "vitalcore-backup"
VERSION = 1
MANIFEST = "manifest.json"
_STORE = "store"
_ACCOUNTS = "accounts.json"
_SQLITE = "clinical.sqlite"
_PGDUMP = "clinical.pgdump"
_CHUNK = 1 << 20
_PARQUET = re.compile(r"^(\d{20})-(\d{20})\.parquet$")
_SEGMENT = re.compile(r"^wal-\d{20}\.seg$")
_SKIP_TOP = {"checkpoint.json", "streams.npz", "wal", "history", "alarms"}


# -- copying with checksums ----------------------------------------------------------------
class _Files:
    """Files written into a backup under construction, with their size and SHA-256."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.entries: dict[str, dict[str, Any]] = {}

    def copy(self, src: Path, rel: str) -> bool:
        """Copy ``src`` to ``rel``; False if ``src`` vanished (deleted by the server)."""
        try:
            fin = open(src, "rb")
        except FileNotFoundError:
            return False
        with fin:
            return self._write(rel, iter(lambda: fin.read(_CHUNK), b""))

    def put(self, rel: str, data: bytes) -> None:
        self._write(rel, iter((data,)))

    def _write(self, rel: str, chunks: Iterator[bytes]) -> bool:
        dst = self.root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        size = 0
        with open(dst, "wb") as out:
            for chunk in chunks:
                h.update(chunk)
                size += len(chunk)
                out.write(chunk)
        self.entries[rel] = {"size": size, "sha256": h.hexdigest()}
        return True

    def adopt(self, rel: str) -> None:
        """Record a file written into the backup by another tool (pg_dump, sqlite)."""
        self.entries[rel] = _digest(self.root / rel)

    def drop(self, rel: str) -> None:
        (self.root / rel).unlink(missing_ok=True)
        self.entries.pop(rel, None)


def _digest(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


# -- the store ------------------------------------------------------------------------------
def _history_files(history: Path) -> list[tuple[int, str]]:
    """``(last LSN, path relative to history/)`` of every Parquet file now (no temporaries)."""
    out = []
    for dirpath, _, names in os.walk(history):
        for name in names:
            m = _PARQUET.match(name)
            if m:
                rel = os.path.relpath(os.path.join(dirpath, name), history)
                out.append((int(m[2]), rel))
    return out


def _copy_history(src: Path, files: _Files, lsn: int, done: set[str]) -> None:
    """Copy every history file ending at or before ``lsn`` that is not copied yet.

    A file compaction deletes after it was listed is replaced by its merged file, which
    the next listing finds; so list again until a pass misses nothing (bounded).
    """
    history = src / "history"
    for _ in range(100):
        missed = False
        for last, rel in _history_files(history):
            if last <= lsn and rel not in done:
                if files.copy(history / rel, f"{_STORE}/history/{rel}"):
                    done.add(rel)
                else:
                    missed = True
        if not missed:
            return
    raise StorageError(f"{history}: files kept vanishing while being copied (compaction loop?)")


def _copy_store(src: Path, files: _Files, attempts: int) -> tuple[int, int]:
    """Copy the store at ``src`` (see the module docstring); ``(checkpoint LSN, attempts)``."""
    if not (src / "wal").is_dir():
        raise UsageError(f"{src} is not a vitalcore data directory (no wal/)")
    done: set[str] = set()
    layout = _read(src / "history" / "layout.json")
    if layout is not None:
        files.put(f"{_STORE}/history/layout.json", layout)
    tries = 0
    while True:
        tries += 1
        ckpt = _read(src / "checkpoint.json")
        streams = _read(src / "streams.npz") if ckpt is not None else None
        lsn = 0
        if ckpt is not None:
            if streams is None:
                raise StorageError(f"{src}: checkpoint.json without streams.npz")
            try:
                lsn = int(json.loads(ckpt)["lsn"])
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageError(f"{src}/checkpoint.json is unreadable: {exc!r}") from None
        for rel in [r for r in files.entries if r.startswith(f"{_STORE}/wal/")]:
            files.drop(rel)
        for name in sorted(n for n in os.listdir(src / "wal") if _SEGMENT.match(n)):
            files.copy(src / "wal" / name, f"{_STORE}/wal/{name}")
        _copy_history(src, files, lsn, done)
        if _read(src / "checkpoint.json") == ckpt:
            break
        if tries >= attempts:
            raise StorageError(f"{src} checkpointed during each of {attempts} copy attempts; "
                               "retry, or raise the flush interval")
    if ckpt is not None:
        files.put(f"{_STORE}/checkpoint.json", ckpt)
        files.put(f"{_STORE}/streams.npz", streams)  # same or newer than ckpt: harmless
    for rel in [r for r in files.entries if r.startswith(f"{_STORE}/history/")]:
        m = _PARQUET.match(os.path.basename(rel))
        if m and int(m[2]) > lsn:  # cannot happen (only <= lsn copied); belt and braces
            files.drop(rel)
    alarms = src / "alarms"
    if alarms.is_dir():
        for name in sorted(os.listdir(alarms)):
            if (alarms / name).is_file() and not name.startswith("."):
                files.copy(alarms / name, f"{_STORE}/alarms/{name}")
    for entry in os.scandir(src):
        if (entry.is_file() and entry.name not in _SKIP_TOP and not entry.name.startswith(".")
                and not entry.name.endswith(".tmp")):
            files.copy(Path(entry.path), f"{_STORE}/{entry.name}")
    return lsn, tries


# -- clinical metadata ----------------------------------------------------------------------
def _is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://")) or (
        "=" in target and any(k in target for k in ("dbname=", "host=")))


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        cands = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
        found = str(cands[-1]) if cands else None
    if found is None:
        raise UsageError(f"{name} not found: install the PostgreSQL client tools")
    return found


def _run(cmd: list[str], what: str) -> None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StorageError(f"{what} failed: {exc}") from None
    if out.returncode != 0:  # stderr, not the command line: the target may hold a password
        raise StorageError(f"{what} failed (exit {out.returncode}): {out.stderr.strip()}")


def _backup_clinical(target: str, files: _Files) -> dict[str, str]:
    if _is_postgres(target):
        _run([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--file",
              str(files.root / _PGDUMP), "--dbname", target], "pg_dump")
        files.adopt(_PGDUMP)
        return {"kind": "postgresql", "file": _PGDUMP}
    if not Path(target).is_file():
        raise UsageError(f"clinical store {target} does not exist")
    try:
        src = sqlite3.connect(f"file:{target}?mode=ro", uri=True, timeout=30)
        try:
            dst = sqlite3.connect(files.root / _SQLITE)
            try:
                src.backup(dst)  # one step: a consistent snapshot; writers go on (WAL)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise StorageError(f"SQLite backup of {target} failed: {exc}") from None
    files.adopt(_SQLITE)
    return {"kind": "sqlite", "file": _SQLITE}


# -- backup ----------------------------------------------------------------------------------
def backup(data_dir: str | os.PathLike[str], dest: str | os.PathLike[str], *,
           accounts: str | os.PathLike[str] | None = None, clinical: str | None = None,
           attempts: int = 20) -> dict[str, Any]:
    """Back up a (running) installation into ``dest``; returns the manifest.

    Parameters
    ----------
    data_dir : path
        The store directory (``serve --data``).
    dest : path
        A new directory, or a new file ending in ``.tar.zst``; must not exist.
    accounts : path, optional
        The accounts file (``serve --accounts``).
    clinical : str, optional
        The clinical store (``serve --clinical``): a SQLite path or a PostgreSQL target.
    attempts : int
        Copies of the WAL tried before giving up when every one races a checkpoint.

    Returns
    -------
    dict
        The manifest: ``format``, ``version``, ``started_at``/``finished_at`` (s since the
        epoch; frames acknowledged before ``started_at`` are in the backup),
        ``checkpoint_lsn``, ``attempts``, ``accounts``, ``clinical`` and ``files``
        (relative path -> ``size`` in bytes and ``sha256``).

    Raises
    ------
    UsageError
        ``dest`` exists, or an input is missing or not what it should be.
    StorageError
        Copying failed (the partial output is removed).
    """
    src, out = Path(data_dir), Path(dest)
    if attempts < 1:
        raise UsageError("attempts must be >= 1")
    if out.exists():
        raise UsageError(f"{out} exists already: a backup never overwrites")
    tarred = out.name.endswith(".tar.zst")
    stage = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial")
    stage.mkdir(parents=True)
    try:
        files = _Files(stage)
        started = time.time()
        lsn, tries = _copy_store(src, files, attempts)
        acc = None
        if accounts is not None:
            if not files.copy(Path(accounts), _ACCOUNTS):
                raise UsageError(f"accounts file {accounts} does not exist")
            os.chmod(stage / _ACCOUNTS, 0o600)
            acc = _ACCOUNTS
        clin = None if clinical is None else _backup_clinical(clinical, files)
        manifest = {
            "format": FORMAT, "version": VERSION, "started_at": started,
            "finished_at": time.time(),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "checkpoint_lsn": lsn, "attempts": tries, "accounts": acc, "clinical": clin,
            "files": dict(sorted(files.entries.items())),
        }
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        if tarred:
            _pack(stage, out)
        else:
            _fsync_tree(stage)
            os.rename(stage, out)
        return manifest
    except OSError as exc:
        raise StorageError(f"backup into {out} failed: {exc}") from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, names in os.walk(root):
        for name in names:
            sync_path(os.path.join(dirpath, name))


def _pack(stage: Path, out: Path) -> None:
    import zstandard

    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as raw:
            with zstandard.ZstdCompressor(level=3, write_checksum=True).stream_writer(raw, closefd=False) as z:
                with tarfile.open(fileobj=z, mode="w|") as tar:
                    tar.add(stage / MANIFEST, MANIFEST)
                    for dirpath, dirs, names in os.walk(stage):
                        dirs.sort()
                        for name in sorted(names):
                            p = Path(dirpath) / name
                            rel = p.relative_to(stage).as_posix()
                            if rel != MANIFEST:
                                tar.add(p, rel)
            raw.flush()
            sync_fd(raw.fileno())
        os.rename(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


# -- verify ----------------------------------------------------------------------------------
def _unpack(archive: Path, into: Path) -> None:
    import zstandard

    try:
        with open(archive, "rb") as raw:
            with zstandard.ZstdDecompressor().stream_reader(raw) as z:
                with tarfile.open(fileobj=z, mode="r|") as tar:
                    tar.extractall(into, filter="data")
    except (tarfile.TarError, zstandard.ZstdError, EOFError, OSError) as exc:
        raise StorageError(f"backup {archive} is corrupted (cannot unpack): {exc}") from None


def _check(root: Path, label: str) -> dict[str, Any]:
    """The manifest of the backup directory ``root`` once every file matches it."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
        entries = manifest["files"]
        if manifest.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"backup {label} is corrupted or incomplete: bad {MANIFEST}: "
                           f"{exc!r}") from None
    if manifest.get("version") != VERSION:
        raise StorageError(f"backup {label} has format version {manifest.get('version')!r}; "
                           f"this vitalcore reads version {VERSION}")
    present = set()
    for dirpath, _, names in os.walk(root):
        for name in names:
            present.add((Path(dirpath) / name).relative_to(root).as_posix())
    present.discard(MANIFEST)
    if missing := sorted(set(entries) - present):
        raise StorageError(f"backup {label} is corrupted or incomplete: {missing[0]} is "
                           f"missing ({len(missing)} file(s) in all)")
    if extra := sorted(present - set(entries)):
        raise StorageError(f"backup {label} is corrupted: {extra[0]} is not in the manifest")
    for rel, want in entries.items():
        got = _digest(root / rel)
        if got != want:
            raise StorageError(f"backup {label} is corrupted: {rel} has size {got['size']} "
                               f"and SHA-256 {got['sha256'][:16]}..., the manifest says "
                               f"{want.get('size')} and {str(want.get('sha256'))[:16]}...")
    return manifest


def verify(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check a backup against its manifest; returns the manifest.

    Raises :class:`StorageError` naming the first missing, extra or corrupted file.
    """
    path = Path(path)
    if path.is_dir():
        return _check(path, str(path))
    if not path.is_file():
        raise UsageError(f"no backup at {path}")
    with tempfile.TemporaryDirectory(prefix=".vc-verify-", dir=path.parent) as tmp:
        _unpack(path, Path(tmp))
        return _check(Path(tmp), str(path))


# -- restore ---------------------------------------------------------------------------------
def restore(path: str | os.PathLike[str], data_dir: str | os.PathLike[str], *,
            accounts: str | os.PathLike[str] | None = None,
            clinical: str | None = None) -> dict[str, Any]:
    """Restore a backup onto a fresh machine; returns a report.

    Every file is checked against the manifest before anything is written. The store
    is then opened (WAL replay from the checkpoint, exactly as after a crash) and
    flushed to Parquet.

    Parameters
    ----------
    path : path
        A backup directory or ``.tar.zst`` made by :func:`backup`.
    data_dir : path
        The new store directory: must not exist, or be empty.
    accounts : path, optional
        Where to write the backed-up accounts file (mode 0600; must not exist).
    clinical : str, optional
        Where to restore the clinical store: a new SQLite path, or an empty PostgreSQL
        database (restored with ``pg_restore``). The backup must hold one of that kind.

    Returns
    -------
    dict
        ``checkpoint_lsn`` (of the backup), ``frames_replayed`` (frames after it replayed
        from the WAL), ``wal_bytes_cut`` (a torn record at the end, never acknowledged),
        ``files``, ``accounts``, ``clinical`` (where each went, or None).

    Raises
    ------
    StorageError
        The backup is corrupted, incomplete or unreadable (nothing is restored), or
        restoring the clinical database failed.
    UsageError
        A destination is not empty, or the backup lacks what was asked for.
    """
    path, data = Path(path), Path(data_dir)
    if data.exists() and (not data.is_dir() or any(data.iterdir())):
        raise UsageError(f"{data} is not empty: restore only onto a fresh data directory")
    if accounts is not None and Path(accounts).exists():
        raise UsageError(f"{accounts} exists already: restore never overwrites accounts")
    data.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".vc-restore-", dir=data.parent) as tmp:
        if path.is_dir():
            root, label = path, str(path)
        elif path.is_file():
            root, label = Path(tmp) / "unpacked", str(path)
            _unpack(path, root)
        else:
            raise UsageError(f"no backup at {path}")
        manifest = _check(root, label)
        if accounts is not None and manifest.get("accounts") is None:
            raise UsageError(f"backup {label} holds no accounts file")
        clin = manifest.get("clinical")
        if clinical is not None:
            if clin is None:
                raise UsageError(f"backup {label} holds no clinical store")
            if (clin["kind"] == "postgresql") != _is_postgres(clinical):
                raise UsageError(f"backup {label} holds a {clin['kind']} clinical store; "
                                 f"restore it into the same kind of database")
            if clin["kind"] == "sqlite" and Path(clinical).exists():
                raise UsageError(f"{clinical} exists already: restore never overwrites it")
        staged = Path(tmp) / "store"
        shutil.copytree(root / _STORE, staged)
        report = _open_restored(staged)
        data.mkdir(exist_ok=True)
        for entry in os.scandir(staged):
            os.rename(entry.path, data / entry.name)
        if accounts is not None:
            fd = os.open(accounts, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write((root / manifest["accounts"]).read_bytes())
        if clinical is not None:
            _restore_clinical(root / clin["file"], clin["kind"], clinical)
    report.update(checkpoint_lsn=manifest["checkpoint_lsn"], files=len(manifest["files"]),
                  accounts=None if accounts is None else str(accounts),
                  clinical=None if clinical is None else clin["kind"],
                  started_at=manifest["started_at"])
    return report


def _open_restored(root: Path) -> dict[str, Any]:
    """Open the restored store (replay + flush), as the server would; what it held."""
    from .storage.store import Store

    try:
        store = Store(root, flush_interval_s=0)
    except VitalcoreError as exc:
        raise StorageError(f"the restored store does not open: {exc}") from exc
    try:
        stats = store.stats()
        replayed = stats["frames"]
        cut = stats["wal"]["truncated_on_open"]
    finally:
        store.close()
    return {"frames_replayed": int(replayed), "wal_bytes_cut": int(cut or 0)}


def _restore_clinical(src: Path, kind: str, target: str) -> None:
    if kind == "postgresql":
        _run([_pg_tool("pg_restore"), "--no-owner", "--exit-on-error", "--single-transaction",
              "--dbname", target, str(src)], "pg_restore")
        return
    tmp = Path(target).with_name(f".{Path(target).name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        shutil.copyfile(src, tmp)
        con = sqlite3.connect(tmp)
        try:
            ok = con.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            con.close()
        if ok != "ok":
            raise StorageError(f"restored clinical store fails its integrity check: {ok}")
        os.link(tmp, target)  # never replaces a file created meanwhile
    except sqlite3.Error as exc:
        raise StorageError(f"restored clinical store is unreadable: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


# -- command line ----------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m vitalcore backup|restore|verify",
                                 description="Online backup and verified restore "
                                 "(docs/backup.md).")
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backup", help="back up a (running) installation")
    b.add_argument("dest", help="new directory, or a file ending in .tar.zst")
    b.add_argument("--data", required=True, help="store directory (serve --data)")
    b.add_argument("--accounts", help="accounts file (serve --accounts)")
    b.add_argument("--clinical", metavar="TARGET", help="clinical store (serve --clinical); "
                   "a PostgreSQL password comes from $PGPASSWORD or ~/.pgpass")
    r = sub.add_parser("restore", help="verify a backup and restore it onto a fresh machine")
    r.add_argument("backup", help="backup directory or .tar.zst")
    r.add_argument("--data", required=True, help="new, empty store directory")
    r.add_argument("--accounts", help="where to write the accounts file (must not exist)")
    r.add_argument("--clinical", metavar="TARGET",
                   help="new SQLite path, or an empty PostgreSQL database")
    v = sub.add_parser("verify", help="check a backup against its manifest")
    v.add_argument("backup")
    return ap


def main(argv: list[str] | None = None) -> int:
    """``python -m vitalcore backup|restore|verify ...``; returns the exit status.

    ``argv`` starts with the command name. Errors are printed as one line on stderr
    (exit 1); the target of ``--clinical`` is never echoed (it may hold a password).
    """
    args = _parser().parse_args(argv)
    try:
        if args.command == "backup":
            m = backup(args.data, args.dest, accounts=args.accounts, clinical=args.clinical)
            size = sum(e["size"] for e in m["files"].values())
            print(f"backup {args.dest}: {len(m['files'])} files, {size} bytes, checkpoint LSN "
                  f"{m['checkpoint_lsn']}, clinical {m['clinical'] and m['clinical']['kind']}; "
                  f"everything acknowledged before {m['created']} is in it")
        elif args.command == "restore":
            rep = restore(args.backup, args.data, accounts=args.accounts,
                          clinical=args.clinical)
            print(f"restored {args.backup} into {args.data}: {rep['files']} files verified, "
                  f"checkpoint LSN {rep['checkpoint_lsn']}, {rep['frames_replayed']} frames "
                  f"replayed from the WAL, clinical {rep['clinical']}")
        else:
            m = verify(args.backup)
            print(f"{args.backup}: {len(m['files'])} files match the manifest")
    except VitalcoreError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
