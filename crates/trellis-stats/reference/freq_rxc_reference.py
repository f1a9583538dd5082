#!/usr/bin/env python3
"""Independent reference for Fisher's exact test on r×c tables and the generalised
Cochran–Mantel–Haenszel statistics, written for trellis-stats (no Python package offers
either: scipy.stats.fisher_exact is 2×2 only, statsmodels' StratifiedTable is 2×2×K only).

Run from the crate directory with a venv holding numpy and scipy:

    python reference/freq_rxc_reference.py

Writes reference/fixtures/adcat.csv (seeded) and reference/fixtures/freq_rxc_reference.json.

* Fisher r×c: brute force. Every table with the observed margins is enumerated (rows one at a
  time; the last two rows vectorised with numpy), its probability computed from log-gamma, and
  the two-sided p-value is the sum over tables with probability <= P_obs * (1 + 1e-7) (R's
  2×2 `relErr`). Shares nothing with the Rust network algorithm but the definition.
* Generalised CMH (Landis, Heyman & Koch 1978; SAS PROC FREQ "CMH statistics"): the formulas
  written out with full matrices. For stratum h with cell vector n_h (row-major), row and
  column proportions p, q: E(n_h) = n_h kron(p, q), Var(n_h) = n_h^2/(n_h - 1)
  kron(diag(p) - pp', diag(q) - qq'); Q = G' V^-1 G with G = sum_h B (n_h - E n_h),
  V = sum_h B Var(n_h) B', and B = kron(Br, Bc): general association
  kron([I 0], [I 0]) (df (R-1)(C-1)), row mean scores kron([I 0], a') (df R-1), correlation
  kron(c', a') (df 1), with table scores c (rows) and a (columns). Strata with fewer than two
  observations are left out (their variance is 0/0), as in trellis and SAS.
"""
import itertools
import json
import math
import os
import sys

import numpy as np
import scipy
from scipy.special import gammaln
from scipy.stats import chi2

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")
REL_TOL = 1e-7


# ---------------------------------------------------------------------------------------
# Fisher r×c by enumeration
# ---------------------------------------------------------------------------------------
def compositions(total, caps):
    """All integer vectors v with sum total and 0 <= v <= caps, as an array (rows = vectors)."""
    caps = list(caps)
    out = []

    def rec(i, left, cur):
        if i == len(caps) - 1:
            if left <= caps[i]:
                out.append(cur + [left])
            return
        rest = sum(caps[i + 1:])
        for v in range(max(0, left - rest), min(caps[i], left) + 1):
            rec(i + 1, left - v, cur + [v])

    rec(0, total, [])
    return np.array(out, dtype=np.int64).reshape(-1, len(caps))


def fisher_rxc_brute(table):
    t = np.asarray(table, dtype=np.int64)
    rows, cols = t.sum(axis=1), t.sum(axis=0)
    n = int(t.sum())
    ln_k = gammaln(rows + 1).sum() + gammaln(cols + 1).sum() - gammaln(n + 1)
    l_obs = gammaln(t + 1).sum()
    thr = l_obs - math.log1p(REL_TOL)  # score = sum ln n_ij!; P = exp(ln_k - score)
    p = 0.0
    count = 0
    r = len(rows)

    def rec(i, remcols, score):
        nonlocal p, count
        if i == r - 2:
            # rows r-2 and r-1: every vector for row r-2, the last row is what is left
            v = compositions(int(rows[i]), remcols)
            last = np.asarray(remcols)[None, :] - v
            ok = (last >= 0).all(axis=1) & (last.sum(axis=1) == rows[r - 1])
            v, last = v[ok], last[ok]
            s = score + gammaln(v + 1).sum(axis=1) + gammaln(last + 1).sum(axis=1)
            count += len(s)
            sel = s >= thr
            p += np.exp(ln_k - s[sel]).sum()
            return
        for v in compositions(int(rows[i]), remcols):
            rec(i + 1, [a - b for a, b in zip(remcols, v)], score + gammaln(v + 1).sum())

    rec(0, [int(c) for c in cols], 0.0)
    return {"table": t.tolist(), "p_two_sided": float(min(p, 1.0)),
            "table_probability": float(math.exp(ln_k - l_obs)), "tables_enumerated": count}


# ---------------------------------------------------------------------------------------
# Generalised CMH, matrix form
# ---------------------------------------------------------------------------------------
def cmh_general(tables, row_scores, col_scores):
    R, C = len(row_scores), len(col_scores)
    a = np.asarray(col_scores, dtype=float).reshape(1, C)
    c = np.asarray(row_scores, dtype=float).reshape(1, R)
    Ir = np.hstack([np.eye(R - 1), np.zeros((R - 1, 1))])
    Ic = np.hstack([np.eye(C - 1), np.zeros((C - 1, 1))])
    Bs = {"general_association": (np.kron(Ir, Ic), (R - 1) * (C - 1)),
          "row_mean_scores": (np.kron(Ir, a), R - 1),
          "correlation": (np.kron(c, a), 1)}
    out = {}
    used = [np.asarray(t, dtype=float) for t in tables if np.sum(t) >= 2]
    for name, (B, df) in Bs.items():
        G = np.zeros(B.shape[0])
        V = np.zeros((B.shape[0], B.shape[0]))
        for t in used:
            nh = t.sum()
            p = t.sum(axis=1) / nh
            q = t.sum(axis=0) / nh
            m = nh * np.kron(p, q)
            var = nh * nh / (nh - 1) * np.kron(np.diag(p) - np.outer(p, p), np.diag(q) - np.outer(q, q))
            G += B @ (t.reshape(-1) - m)
            V += B @ var @ B.T
        Q = float(G @ np.linalg.solve(V, G))
        out[name] = {"statistic": Q, "df": df, "p": float(chi2.sf(Q, df))}
    out["strata"] = len(used)
    return out


def main():
    ref = {"versions": {"python": sys.version.split()[0], "numpy": np.__version__, "scipy": scipy.__version__},
           "rel_tol": REL_TOL}

    # Tables: small and moderate, ties of probabilities (symmetric tables), a zero row and
    # column (ignored by the test), extreme and unremarkable p-values. (R's Job satisfaction
    # table from ?fisher.test, 4×4 with n = 96, has too many tables for enumeration in Python;
    # the Rust test compares it with the p-value R prints, 0.7827.)
    fisher_tables = [
        [[3, 1, 4], [1, 5, 9], [2, 6, 5]],
        [[2, 7, 1, 8], [2, 8, 1, 8], [2, 8, 4, 5]],
        [[1, 2], [2, 1], [3, 0]],
        [[5, 0, 0], [0, 5, 0], [0, 0, 5]],
        [[2, 2, 2], [2, 2, 2]],
        [[4, 4], [4, 4]],
        [[0, 0, 0, 0], [3, 1, 0, 2], [1, 4, 0, 0], [2, 2, 0, 5]],
        [[10, 12, 8, 9, 11], [12, 9, 10, 11, 8]],
        [[8, 2, 1], [1, 7, 3], [0, 2, 9], [3, 3, 3]],
        [[20, 15, 10], [10, 15, 20]],
    ]
    fres = []
    for t in fisher_tables:
        res = fisher_rxc_brute(t)
        print("fisher", t, res["p_two_sided"], res["tables_enumerated"], "tables", flush=True)
        fres.append(res)
    ref["fisher_rxc"] = {"source": "brute-force enumeration (numpy/scipy gammaln), p sums P <= P_obs*(1+1e-7)",
                         "tables": fres}

    # Stratified tables for the generalised CMH: 2×3×3, 3×4×2 with unequal scores, 3×3×4
    # with a stratum of one observation (left out) and a zero row in one stratum, and the
    # 2×2×K CENTER data of make_reference.py (all three statistics equal the uncorrected
    # Mantel–Haenszel chi-square there).
    cmh_cases = [
        {"tables": [[[5, 3, 2], [2, 4, 6]], [[7, 2, 1], [3, 3, 4]], [[4, 4, 4], [1, 5, 6]]],
         "row_scores": [1, 2], "col_scores": [1, 2, 3]},
        {"tables": [[[10, 8, 5, 2], [7, 9, 6, 3], [3, 6, 9, 8]], [[6, 5, 3, 1], [5, 5, 4, 2], [2, 4, 6, 7]]],
         "row_scores": [0, 10, 40], "col_scores": [1, 2, 4, 8]},
        {"tables": [[[3, 1, 0], [1, 2, 2], [0, 1, 4]], [[2, 2, 1], [0, 0, 0], [1, 2, 3]],
                    [[0, 0, 1], [0, 0, 0], [0, 0, 0]], [[4, 3, 1], [2, 2, 2], [1, 3, 5]]],
         "row_scores": [1, 2, 3], "col_scores": [1, 2, 3]},
    ]
    rj = os.path.join(OUT, "reference.json")
    if os.path.exists(rj):
        with open(rj) as f:
            old = json.load(f)
        cmh_cases.append({"tables": old["cmh"]["tables"], "row_scores": [1, 2], "col_scores": [1, 2],
                          "statsmodels_cmh_chisq": old["cmh"]["chisq"]})
    cres = []
    for case in cmh_cases:
        r = cmh_general(case["tables"], case["row_scores"], case["col_scores"])
        if "statsmodels_cmh_chisq" in case:
            for k in ("general_association", "row_mean_scores", "correlation"):
                assert abs(r[k]["statistic"] - case["statsmodels_cmh_chisq"]) < 1e-9 * case["statsmodels_cmh_chisq"]
        print("cmh", {k: v for k, v in r.items()}, flush=True)
        cres.append({**case, **r})
    ref["cmh_general"] = {"source": "Landis-Heyman-Koch matrix formulas (numpy), chi-square p from scipy",
                          "cases": cres}

    # A dataset for the command line: dose (numeric: table scores 0, 10, 40) × response
    # grade 1-4 (numeric) by site; pooled table for Fisher, all sites for the CMH statistics.
    rng = np.random.default_rng(20261207)
    nobs = 66
    dose = rng.choice([0, 10, 40], size=nobs, p=[0.34, 0.33, 0.33])
    site = rng.choice(["S1", "S2", "S3"], size=nobs)
    lin = 0.03 * dose + rng.normal(0, 1.0, nobs)
    grade = np.digitize(lin, [-0.3, 0.5, 1.3]) + 1
    with open(os.path.join(OUT, "adcat.csv"), "w") as f:
        f.write("USUBJID,DOSE,GRADE,SITE\n")
        for i in range(nobs):
            f.write(f"S{i + 1:03d},{dose[i]},{grade[i]},{site[i]}\n")
    dl, gl, sl = [0, 10, 40], [1, 2, 3, 4], ["S1", "S2", "S3"]
    tabs = [[[int(np.sum((dose == d) & (grade == g) & (site == s))) for g in gl] for d in dl] for s in sl]
    pooled = np.sum(np.array(tabs), axis=0).tolist()
    fz = fisher_rxc_brute(pooled)
    print("dataset fisher", pooled, fz["p_two_sided"], fz["tables_enumerated"], "tables", flush=True)
    cm = cmh_general(tabs, dl, gl)
    ref["adcat"] = {"file": "adcat.csv", "row": "DOSE", "col": "GRADE", "strata": "SITE",
                    "row_levels": dl, "col_levels": gl, "strata_levels": sl,
                    "table": pooled, "strata_tables": tabs, "fisher": fz, "cmh_general": cm}

    with open(os.path.join(OUT, "freq_rxc_reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
    print("wrote", os.path.join(OUT, "freq_rxc_reference.json"))


if __name__ == "__main__":
    main()
