"""``python -m vitalcore [demo] [options]``.

Until the embedded server lands, the default command is the demo: a simulated ward
through decoder, write-ahead log, live buffers and Parquet history.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args and not args[0].startswith("-") else "demo"
    if command == "demo":
        from .demo import main as demo

        demo(args)
    elif command == "serve":
        from .server.cli import main as serve

        sys.exit(serve(args))
    else:
        sys.exit(f"unknown command {command!r}; commands: demo, serve")


if __name__ == "__main__":
    main()
