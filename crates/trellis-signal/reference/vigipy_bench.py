#!/usr/bin/env python3
"""Times vigipy 3.5.1 (PRR, ROR, BCPNN closed form, GPS/MGPS with its prior
fit) on a `name,AE,count` pair table; prints one JSON line. Used by
`trellis signal bench --vigipy-python ...` (see run_bench.sh)."""
import json
import resource
import sys
import time
from importlib.metadata import version

import pandas as pd
from vigipy import bcpnn, convert, gps, prr, ror

t = {}
t0 = time.perf_counter()
df = pd.read_csv(sys.argv[1], keep_default_na=False)
t["read"] = time.perf_counter() - t0
c0 = time.perf_counter()
s = time.perf_counter(); cont = convert(df); t["convert"] = time.perf_counter() - s
s = time.perf_counter(); prr(cont, min_events=1); t["prr"] = time.perf_counter() - s
s = time.perf_counter(); ror(cont, min_events=1); t["ror"] = time.perf_counter() - s
s = time.perf_counter(); bcpnn(cont, min_events=1); t["bcpnn"] = time.perf_counter() - s
s = time.perf_counter(); gps(cont, min_events=1); t["gps"] = time.perf_counter() - s
t["compute"] = time.perf_counter() - c0
t["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t["version"] = version("vigipy")
t["pairs"] = len(df)
print(json.dumps(t))
