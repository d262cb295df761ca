"""Store format benchmark: reading a MOSEI-sized text column as fixed_size_binary vs fixed_size_list.

    python bench/bench_store.py [--n 16326]

Writes both layouts of a (n, 50, 300) float32 array to a temporary directory, then reads each in
a fresh subprocess and prints read seconds, Arrow-allocated bytes and anonymous RSS.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

READER = r"""
import sys, time, numpy as np, pyarrow as pa, pyarrow.parquet as pq
t = time.perf_counter()
tb = pq.read_table(sys.argv[1], memory_map=True)
ch = tb.column("x").chunk(0)
if isinstance(ch.type, pa.FixedSizeBinaryType):
    a = np.frombuffer(ch.buffers()[1], dtype="<f4")
else:
    a = ch.values.to_numpy(zero_copy_only=True)
dt = time.perf_counter() - t
anon = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon")][0] / 1e6
print(f"{dt:.2f} s  arrow {pa.total_allocated_bytes() / 1e9:.2f} GB  anon RSS {anon:.2f} GB  chunks {tb.column('x').num_chunks}")
"""


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=16326)
    args = p.parse_args()
    x = np.random.default_rng(0).standard_normal((args.n, 50, 300), dtype=np.float32)
    print(f"array {x.shape} float32 = {x.nbytes / 1e9:.2f} GB")
    with tempfile.TemporaryDirectory() as d:
        width = 50 * 300
        layouts = {
            "fixed_size_binary": pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(width * 4), args.n, [None, pa.py_buffer(x)]
            ),
            "fixed_size_list": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), width),
        }
        for name, arr in layouts.items():
            path = Path(d) / f"{name}.parquet"
            pq.write_table(
                pa.table({"x": arr}),
                path,
                row_group_size=args.n,
                compression="none",
                use_dictionary=False,
            )
            out = subprocess.run(
                [sys.executable, "-c", READER, str(path)],
                capture_output=True,
                text=True,
                check=True,
            )
            print(f"{name:<18} {out.stdout.strip()}")


if __name__ == "__main__":
    main()
