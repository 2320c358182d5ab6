"""python -m envoy_config [--write-example | --check-example]: print, rewrite or check the committed example."""

from __future__ import annotations

import argparse
import os
import sys

from envoy_config import example
from envoy_config.example import EXAMPLE_PATH, ROOT, render_example


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m envoy_config",
        description=example.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--write-example", action="store_true",
                        help=f"(re)write {EXAMPLE_PATH.relative_to(ROOT)} and check it with Envoy")
    parser.add_argument("--check-example", action="store_true",
                        help="exit 1 when the committed example is stale")
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # the example's descriptor path is relative to the repository root
    rendered = render_example()
    if args.write_example:
        from localstack.envoy import validate_example  # runs the Envoy binary

        EXAMPLE_PATH.write_text(rendered, encoding="utf-8")
        validate_example(rendered)
        print(f"wrote {EXAMPLE_PATH.relative_to(ROOT)}")
        return 0
    if args.check_example:
        current = EXAMPLE_PATH.read_text(encoding="utf-8") if EXAMPLE_PATH.exists() else ""
        if current != rendered:
            print(f"{EXAMPLE_PATH.relative_to(ROOT)} is stale: run python -m envoy_config --write-example",
                  file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(rendered)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
