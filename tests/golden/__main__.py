"""`python -m tests.golden [EXAMPLE...]`: regenerate golden/ and say what changed."""

from __future__ import annotations

import sys

from tests.golden import regenerate


def main(argv: list[str]) -> int:
    try:
        report = regenerate(argv or None)
    except ValueError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    for name, diff in report.items():
        print(f"golden/{name}/: {'changed' if diff else 'unchanged'}")
        if diff:
            print("".join(f"  {line}\n" for line in str(diff).splitlines()), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
