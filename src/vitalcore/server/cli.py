"""``python -m vitalcore serve``: run the MQTT server on a store directory.

Examples
--------
Create accounts, then serve::

    python -m vitalcore serve --accounts accounts.json --add-device 00000000000012ab
    python -m vitalcore serve --data /var/lib/vitalcore --accounts accounts.json \\
        --port 1883 --tls-port 8883 --cert server.pem --key server.key \\
        [--client-ca devices-ca.pem]

With the clinical organisation (docs/clinical.md): users and devices log in with their
clinical accounts, alarm events go to the topic of the device's current ward; a
PostgreSQL password comes from $PGPASSWORD or ~/.pgpass, as libpq reads them::

    python -m vitalcore serve --data /var/lib/vitalcore --clinical /var/lib/vitalcore/clinical.sqlite
    python -m vitalcore serve --clinical "postgresql://vitalcore@db.example/clinical"

Scale-out (docs/scale-out.md): consume the uplinks from a broker cluster as one member of
a shared subscription; the password comes from $VITALCORE_UPSTREAM_PASSWORD or a file::

    python -m vitalcore serve --data /var/lib/vitalcore --upstream mqtts://broker:8883 \\
        --share-group vitalcore --upstream-user node1 --upstream-ca ca.pem \\
        --upstream-password-file /etc/vitalcore/upstream.pw
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import signal
import ssl
import sys

import uvloop

from ..errors import StorageError
from .auth import ROLES, Accounts
from .topics import parse_device_name

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m vitalcore serve", description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="vitalcore-data", help="store directory (default: %(default)s)")
    ap.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    ap.add_argument("--port", type=int, default=None,
                    help="plain MQTT port, 0 = none (default 1883; none with --upstream)")
    ap.add_argument("--tls-port", type=int, default=None, help="MQTT over TLS port")
    ap.add_argument("--coap-port", type=int, default=None,
                    help="CoAP (UDP) port for low-power devices (default: none; see docs/server.md)")
    ap.add_argument("--cert", help="TLS certificate chain (PEM)")
    ap.add_argument("--key", help="TLS private key (PEM)")
    ap.add_argument("--client-ca", help="mutual TLS: require a client certificate issued by "
                    "this CA (PEM); its common name must be the user name logging in")
    ap.add_argument("--client-crl", help="with --client-ca: certificate revocation list(s) "
                    "(PEM) of that CA; a revoked client certificate fails the handshake")
    ap.add_argument("--accounts", help="accounts file (JSON, mode 0600); this or --clinical is "
                    "required unless --upstream runs without an embedded listener")
    ap.add_argument("--clinical", metavar="TARGET",
                    help="clinical store (SQLite path, or postgresql:// URL / libpq string; "
                    "password from $PGPASSWORD or ~/.pgpass): MQTT/CoAP logins of its users "
                    "and devices, alarm topics by the device's current ward. With --accounts "
                    "too, the file's accounts are looked up first (docs/clinical.md)")
    ap.add_argument("--sync", default="group", choices=("group", "always", "none"),
                    help="WAL durability policy (default: %(default)s)")
    ap.add_argument("--no-alarms", action="store_true",
                    help="do not run the alarm engine (default: on; log in DATA/alarms, events "
                    "on vc/v1/alarms/<ward>/<device>/event, the ward from --clinical, else "
                    "_unassigned: docs/alarms.md; off with --upstream)")
    ap.add_argument("--add-device", metavar="HEX16",
                    help="add/replace a device account (secret read from stdin/prompt), then exit")
    ap.add_argument("--add-user", metavar="NAME",
                    help="add/replace a user account (password read from stdin/prompt), then exit")
    ap.add_argument("--role", default="viewer", choices=ROLES, help="role of --add-user")
    ap.add_argument("--scope-device", action="append", default=[], metavar="HEX16",
                    help="device in the scope of --add-user (repeatable)")
    ap.add_argument("--grant", action="append", default=[], metavar="FILTER",
                    help="topic filter --add-user may subscribe to (repeatable)")
    up = ap.add_argument_group("scale-out through an upstream broker (docs/scale-out.md)")
    up.add_argument("--upstream", metavar="URL",
                    help="consume device uplinks from mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    up.add_argument("--share-group", metavar="NAME",
                    help="shared-subscription group of the nodes that split the devices")
    up.add_argument("--upstream-user", metavar="NAME",
                    help="upstream user name (default $VITALCORE_UPSTREAM_USER)")
    up.add_argument("--upstream-password-file", metavar="PATH",
                    help="file (mode 0600) whose first line is the upstream password "
                    "(default $VITALCORE_UPSTREAM_PASSWORD)")
    up.add_argument("--upstream-ca", metavar="PEM", help="CA bundle for mqtts:// (default: system)")
    up.add_argument("--upstream-cert", metavar="PEM", help="client certificate for mqtts://")
    up.add_argument("--upstream-key", metavar="PEM", help="client key for mqtts://")
    up.add_argument("--upstream-client-id", metavar="ID",
                    help="MQTT client id (default: kept in DATA/upstream-client-id)")
    up.add_argument("--upstream-session-expiry", type=int, default=7 * 24 * 3600, metavar="S",
                    help="session expiry asked of the broker (default: %(default)s s)")
    up.add_argument("--upstream-receive-maximum", type=int, default=1024, metavar="N",
                    help="messages in flight from the broker (default: %(default)s)")
    up.add_argument("--upstream-leave-on-exit", action="store_true",
                    help="on SIGINT/SIGTERM leave the share group and end this node's session "
                    "(scaling down for good); default: keep the session for a restart")
    up.add_argument("--upstream-stats-interval", type=float, default=60.0, metavar="S",
                    help="log the consumer's counters every S s, 0 = never (default: %(default)s)")
    ap.add_argument("--log-level", default="INFO")
    return ap


def _secret(what: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(f"{what}: ")
    return sys.stdin.readline().rstrip("\n")


def _edit_accounts(args: argparse.Namespace) -> int:
    accounts = Accounts.load(args.accounts) if os.path.exists(args.accounts) else Accounts()
    if args.add_device:
        device = parse_device_name(args.add_device)
        if device is None:
            sys.exit(f"device id must be 16 lower-case hex digits, got {args.add_device!r}")
        accounts.add_device(device, _secret(f"secret of device {args.add_device}"))
    else:
        devices = []
        for name in args.scope_device:
            if (d := parse_device_name(name)) is None:
                sys.exit(f"--scope-device must be 16 lower-case hex digits, got {name!r}")
            devices.append(d)
        accounts.add_user(args.add_user, _secret(f"password of {args.add_user}"), args.role,
                          devices, args.grant)
    accounts.save(args.accounts)
    print(f"{args.accounts}: {len(accounts)} account(s)")
    return 0


def _upstream_config(args: argparse.Namespace):
    """The :class:`UpstreamConfig` of ``--upstream`` (None without it); exits on errors."""
    if args.upstream is None:
        if args.share_group is not None:
            sys.exit("--share-group needs --upstream")
        return None
    from ..errors import ConfigError
    from .upstream import USER_ENV, UpstreamConfig, node_client_id, read_secret

    if not args.share_group:
        sys.exit("--upstream needs --share-group")
    try:
        user = args.upstream_user or os.environ.get(USER_ENV) or None
        password = read_secret(args.upstream_password_file)
        client_id = args.upstream_client_id or node_client_id(args.data, args.share_group)
        return UpstreamConfig.from_url(
            args.upstream, args.share_group, client_id, username=user, password=password,
            ca_file=args.upstream_ca, cert_file=args.upstream_cert, key_file=args.upstream_key,
            session_expiry_s=args.upstream_session_expiry,
            receive_maximum=args.upstream_receive_maximum)
    except (ConfigError, OSError) as exc:
        sys.exit(f"--upstream: {exc}")


def _open_clinical(target: str):
    """The clinical store of ``--clinical`` (exits on errors, never echoing the target: a
    URL may hold a password)."""
    from ..clinical import open_store
    from ..errors import VitalcoreError

    try:
        return open_store(target)
    except VitalcoreError as exc:
        sys.exit(f"--clinical: {exc}")


def _accounts(path: str | None, clinical) -> Accounts | None:
    """The server's accounts: the file's, the clinical store's, or both (file first)."""
    if clinical is None:
        return Accounts.load(path) if path else None
    from ..clinical import ClinicalAccounts

    if path:
        return ClinicalAccounts.load(path, store=clinical)
    return ClinicalAccounts(clinical)


def _alarm_engine(store, server, data: str, wards=None):
    """The alarm engine on ``store`` (plugins from the ``vitalcore.alarms`` entry points),
    published through the embedded broker (topics by ``wards.ward_of``, else
    ``_unassigned``) and told of device connections, if it runs."""
    from ..alarms import AlarmEngine, AlarmLog, AlarmPublisher

    engine = AlarmEngine(alarm_log=AlarmLog(os.path.join(data, "alarms")))
    engine.load_plugins()
    if server is not None and server.broker is not None:
        ward_of = wards.ward_of if wards is not None else (lambda device_id: None)
        engine.add_listener(AlarmPublisher(server.broker.publish, ward_of))
        server.broker.add_presence_listener(engine.device_presence)
    engine.attach(store)
    return engine


async def _serve(args: argparse.Namespace) -> None:
    from ..storage.store import Store
    from .app import Server

    upstream = _upstream_config(args)
    port = args.port if args.port is not None else (None if upstream else 1883)
    listen = bool(port) or args.tls_port is not None
    ctx = None
    if args.client_ca and args.tls_port is None:
        sys.exit("--client-ca needs --tls-port")
    if args.client_crl and not args.client_ca:
        sys.exit("--client-crl needs --client-ca")
    if args.tls_port is not None:
        if not (args.cert and args.key):
            sys.exit("--tls-port needs --cert and --key")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)
        if args.client_ca:  # mutual TLS: a certificate from this CA, naming the user
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(args.client_ca)
            if args.client_crl:
                ctx.load_verify_locations(args.client_crl)
                ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    if (listen or args.coap_port is not None) and not (args.accounts or args.clinical):
        sys.exit("--accounts or --clinical is required for the embedded MQTT/CoAP listeners")
    if not (listen or upstream or args.coap_port is not None):
        sys.exit("nothing to serve: no --port, --tls-port, --coap-port or --upstream")
    clinical = _open_clinical(args.clinical) if args.clinical else None
    try:
        accounts = _accounts(args.accounts, clinical)
    except BaseException:
        if clinical is not None:
            clinical.close()
        raise
    wards = None
    store = Store(args.data, sync=args.sync)
    server = Server(store, accounts, args.host, port or None, args.tls_port, ctx) if listen \
        else None
    consumer = None
    if upstream is not None:
        from .upstream import UpstreamConsumer

        consumer = UpstreamConsumer(store, upstream, stats_interval_s=args.upstream_stats_interval)
    engine = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    coap = None
    if args.coap_port is not None:
        from .coap import CoapEndpoint

        coap = CoapEndpoint(store, accounts, args.host, args.coap_port)
    failed = None
    try:
        if server is not None:
            await server.start()
        if not args.no_alarms and upstream is None:
            if clinical is not None and server is not None:
                from ..clinical import WardDirectory

                wards = WardDirectory(clinical)
                wards.start()
            engine = _alarm_engine(store, server, args.data, wards)
        elif upstream is not None:  # a node may see only part of each device's stream
            logging.getLogger("vitalcore.server").warning(
                "alarms are off in scale-out mode: a shared subscription may split a device's "
                "stream between nodes (docs/scale-out.md)")
        if coap is not None:
            await coap.start()
        if consumer is not None:
            await consumer.start()
            ended = loop.create_task(consumer.wait_closed())
            stopped = loop.create_task(stop.wait())
            await asyncio.wait({ended, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if ended.done():
                failed = ended.exception()
            else:
                ended.cancel()
        else:
            await stop.wait()
    finally:
        if consumer is not None:
            if args.upstream_leave_on_exit and consumer.connected:
                await consumer.leave()
            else:
                await consumer.stop()
        if coap is not None:
            await coap.stop()
        if server is not None:
            await server.stop()
        if engine is not None:
            engine.close()
        if wards is not None:
            wards.close()
        store.close()
        if clinical is not None:
            clinical.close()
    if failed is not None:
        sys.exit(f"upstream consumer ended: {failed}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m vitalcore serve``; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.add_device or args.add_user:
        if not args.accounts:
            sys.exit("--add-device / --add-user need --accounts")
        return _edit_accounts(args)
    from .ingest import raise_fd_limit

    raise_fd_limit()  # a descriptor per connection, two per device connection
    try:
        uvloop.run(_serve(args))
    except StorageError as exc:  # full or read-only disk, corrupt log: one clear line
        logging.getLogger("vitalcore.server").debug("storage failure", exc_info=True)
        sys.exit(f"vitalcore serve: storage error: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
