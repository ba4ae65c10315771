#!/usr/bin/env python
"""Profile the fused Gumbel-softmax on a CUDA GPU; the plain-script twin of `gumbench profile-kernel`.

    python scripts/profile_kernel.py [--out results/kernel] [--quick]

Without a GPU it prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

from gumbench.errors import GumbenchError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/kernel", help="output folder (CSV, figures, summary)")
    parser.add_argument("--quick", action="store_true", help="three small sizes, for a smoke test")
    parser.add_argument("--provider", action="append", help="restrict to these providers (repeatable)")
    parser.add_argument("--mode", action="append", help="forward, backward or full (repeatable; default all)")
    args = parser.parse_args(argv)
    try:
        from gumbench.kernels.profile import MODES, profile_kernel

        result = profile_kernel(
            args.out, quick=args.quick, providers=tuple(args.provider) if args.provider else None,
            modes=tuple(args.mode) if args.mode else MODES,
        )  # fmt: skip
    except GumbenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for target in result["targets"]:
        print(f"{'ok ' if target['ok'] else 'NO '} {target['target']}: {target['value']} ({target['note']})")
    print(f"wrote {result['csv']}, {result['summary']} and {len(result['figures'])} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
