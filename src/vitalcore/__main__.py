"""``python -m vitalcore [command] [options]``.

Commands (``python -m vitalcore COMMAND --help`` for each):

- ``run`` (the default): the embedded server with its store and a simulated ward of
  wearables over real MQTT on 127.0.0.1, status every few seconds, a ward-wide BP
  measurement; Ctrl-C stops it.
- ``serve``: the embedded server alone (MQTT broker + store).
- ``simulate``: a simulated ward connecting to a running server.
- ``demo``: the offline pipeline walk-through (frames -> store -> history, checked
  against the devices' ground truth), no network.
- ``backup``, ``restore``, ``verify``: online backup of a running installation and its
  verified restore onto a fresh machine (docs/backup.md).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args and not args[0].startswith("-") else "run"
    if command == "run":
        from .sim.run import main as run

        sys.exit(run(args))
    elif command == "serve":
        from .server.cli import main as serve

        sys.exit(serve(args))
    elif command == "simulate":
        from .sim.cli import main as simulate

        sys.exit(simulate(args))
    elif command == "demo":
        from .demo import main as demo

        demo(args)
    elif command in ("backup", "restore", "verify"):
        from .backup import main as backup

        sys.exit(backup([command, *args]))
    else:
        sys.exit(f"unknown command {command!r}; commands: run, serve, simulate, demo, "
                 "backup, restore, verify")


if __name__ == "__main__":
    main()
