"""Hit ratio of each L1 strategy on public cache traces, against published figures.

Traces are read from ``../shared/traces`` (one integer key per line, gzip). Hit ratio =
hits / all accesses, cold misses included, cache size in entries, through the real
``MemoryTier`` (so the read buffer and the policies are what is measured).

    python benchmarks/eviction_policies.py [--traces DIR] [--all]
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

from hiercache.memory import MemoryTier
from hiercache.settings import CacheStrategy

# (trace, size) -> published or reference figures, from the traces' README.
REFERENCE: dict[tuple[str, int], str] = {
    ("lirs_gli", 500): "LRU 0.95, W-TinyLFU 33.08, optimal 34.33",
    ("lirs_gli", 1000): "LRU 11.21, W-TinyLFU 50.57, optimal 53.15",
    ("lirs_multi3", 1000): "LRU 37.70, LFU 39.16, optimal 56.29",
    ("lirs_sprite", 500): "LRU 78.30, LFU 25.61, optimal 87.89",
    ("lirs_2_pools", 500): "LRU 51.06, LFU 51.86, optimal 62.85",
    ("corda_vaultservice", 1000): "LRU 33.33 (= optimal), LFU 0.74",
    ("lirs_loop", 512): "W-TinyLFU (1% window) 49.94, LRU 0.00",
    ("arc_OLTP", 1000): "LRU 32.83, ARC 39.06, W-TinyLFU 35.30, optimal 53.62",
}
QUICK = [
    ("lirs_gli", 500),
    ("lirs_gli", 1000),
    ("lirs_multi3", 1000),
    ("lirs_sprite", 500),
    ("lirs_2_pools", 500),
    ("corda_vaultservice", 1000),
]


def hit_ratio(keys: list[str], size: int, strategy: CacheStrategy) -> float:
    tier = MemoryTier(size, strategy=strategy)
    hits = 0
    for key in keys:
        if tier.get(key) is not None:
            hits += 1
        else:
            tier.set(key, True, 1e9)
    return 100.0 * hits / len(keys)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    default = Path(__file__).resolve().parents[2] / "shared" / "traces"
    parser.add_argument("--traces", type=Path, default=default)
    parser.add_argument("--all", action="store_true", help="also the large loop and OLTP traces")
    args = parser.parse_args()
    cases = QUICK + ([("lirs_loop", 512), ("arc_OLTP", 1000)] if args.all else [])
    strategies = list(CacheStrategy)
    print(
        f"{'trace':<20}{'size':>6}" + "".join(f"{s.value:>10}" for s in strategies) + "   reference"
    )
    for trace, size in cases:
        path = args.traces / f"{trace}.keys.gz"
        if not path.exists():
            print(f"{trace:<20}{size:>6}   (missing: {path})")
            continue
        with gzip.open(path, "rt") as fh:
            keys = [line.strip() for line in fh if line.strip()]
        row = "".join(f"{hit_ratio(keys, size, s):>10.2f}" for s in strategies)
        print(f"{trace:<20}{size:>6}{row}   {REFERENCE[(trace, size)]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
