#!/usr/bin/env python3
"""Independent numpy/scipy reference for trellis-signal (issue 4).

Generates a small report data set, computes every measure with numpy/scipy
(written separately from the Rust code, following openEBGM 0.9.1's R code and
the formulas in the crate README), and writes fixtures that the Rust tests
compare against. Run from this directory:

    python make_fixtures.py          # needs numpy and scipy

Outputs (fixtures/):
  pairs_small.csv          report_id,drug,event,sex,agegrp (input)
  ref_report.csv           report-based, unstratified: counts, E, PRR..IC975,
                           EBGM/EB05/EB95 under ref_report.prior.json
  ref_report.prior.json    prior fitted on autoSquash'ed data, N* = 1
  ref_report_nosquash.prior.json   prior fitted on all pairs, N* = 1
  ref_strat.csv / .prior.json      stratified by sex and agegrp (squashed fit)
  ref_cellsum.csv          cell-sum convention: counts, E, PRR, ROR, chisq
  fitpoints.csv            (n, E) drawn from a known gamma-mixture model
  fitpoints_nstar1.prior.json  MLE on them (N* = 2: see fit_nstar2.py)
"""
import json
import os

import numpy as np
from scipy import optimize, special, stats

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
Z975 = stats.norm.ppf(0.975)
STARTS = [
    (0.2, 0.1, 2.0, 4.0, 1 / 3),
    (0.1, 0.2, 10.0, 10.0, 0.2),
    (0.3, 0.5, 6.0, 6.0, 0.5),
    (0.5, 0.3, 12.0, 12.0, 0.8),
    (0.2, 0.2, 5.0, 5.0, 0.4),
]


# ----------------------------------------------------------------------------
# data
def make_reports(seed=7, n_reports=6000, n_drugs=70, n_events=90):
    rng = np.random.default_rng(seed)
    dp = 1.0 / np.arange(1, n_drugs + 1) ** 1.0
    dp /= dp.sum()
    ep = 1.0 / np.arange(1, n_events + 1) ** 0.9
    ep /= ep.sum()
    # drug-specific relative rates drawn from a gamma mixture (signals + noise)
    comp = rng.random((n_drugs, n_events)) < 0.15
    lam = np.where(comp, rng.gamma(2.0, 1 / 0.8, (n_drugs, n_events)),
                   rng.gamma(8.0, 1 / 9.0, (n_drugs, n_events)))
    rows = []
    sexes = np.array(["F", "M"])
    ages = np.array(["0-44", "45-64", "65+"])
    for r in range(n_reports):
        nd = 1 + rng.poisson(0.9)
        drugs = np.unique(rng.choice(n_drugs, size=nd, p=dp))
        w = ep * lam[drugs].mean(axis=0)
        w /= w.sum()
        ne = 1 + rng.poisson(1.3)
        events = np.unique(rng.choice(n_events, size=ne, p=w))
        sex = sexes[rng.integers(2)]
        age = ages[rng.integers(3)]
        rid = f"R{(r * 7919) % 1000003:07d}"
        for d in drugs:
            for e in events:
                rows.append((rid, f"drug_{d:03d}", f"Event {e:03d}", sex, age))
    return rows


# ----------------------------------------------------------------------------
# counting (openEBGM processRaw semantics: unique ids)
def count(rows, strata=None, cellsum=False):
    ids = np.array([r[0] for r in rows])
    drugs = np.array([r[1] for r in rows])
    events = np.array([r[2] for r in rows])
    if strata is None:
        strat = np.zeros(len(rows), dtype=np.int64)
    else:
        lab = np.array(["-".join(r[3 + k] for k in strata) for r in rows])
        _, strat = np.unique(lab, return_inverse=True)
    # unique triples
    trip = np.unique(np.stack([ids, drugs, events]), axis=1)
    t_ids, t_d, t_e = trip
    # stratum of each id (first row of the id)
    _, first = np.unique(ids, return_index=True)
    id_strat = dict(zip(ids[first], strat[first]))
    t_s = np.array([id_strat[i] for i in t_ids])
    pairs, a = np.unique(np.stack([t_d, t_e]), axis=1, return_counts=True)
    S = t_s.max() + 1
    if cellsum:
        def marg(names, who):
            out = {}
            for nm, s in zip(names, t_s):
                out.setdefault(nm, np.zeros(S))[s] += 1
            return out
        md = marg(t_d, None)
        me = marg(t_e, None)
        ns = np.bincount(t_s, minlength=S).astype(float)
    else:
        def marg(names):
            u = np.unique(np.stack([t_ids, names]), axis=1)
            out = {}
            for i, nm in zip(u[0], u[1]):
                out.setdefault(nm, np.zeros(S))[id_strat[i]] += 1
            return out
        md = marg(t_d)
        me = marg(t_e)
        uid = np.unique(t_ids)
        ns = np.bincount(np.array([id_strat[i] for i in uid]), minlength=S).astype(float)
    N = ns.sum()
    res = []
    for (d, e), aa in zip(pairs.T, a):
        n1 = md[d].sum()
        m1 = me[e].sum()
        if S == 1:
            E = (n1 / N) * m1
        else:
            E = float(np.sum(md[d] * me[e] / ns))
        res.append((d, e, int(aa), int(n1 - aa), int(m1 - aa), int(N - n1 - m1 + aa), E))
    return res


# ----------------------------------------------------------------------------
# measures
def measures(a, b, c, d, E):
    a, b, c, d = (np.asarray(x, dtype=float) for x in (a, b, c, d))
    with np.errstate(divide="ignore", invalid="ignore"):
        prr = (a / (a + b)) / (c / (c + d))
        se = np.sqrt(1 / a - 1 / (a + b) + 1 / c - 1 / (c + d))
        ror = a * d / (b * c)
        se2 = np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
        n = a + b + c + d
        chisq = n * (np.abs(a * d - b * c) - n / 2) ** 2 / ((a + b) * (c + d) * (a + c) * (b + d))
        ic = np.log2((a + 0.5) / (E + 0.5))
        ic025 = np.log2(special.gammaincinv(a + 0.5, 0.025) / (E + 0.5))
        ic975 = np.log2(special.gammaincinv(a + 0.5, 0.975) / (E + 0.5))
        return dict(PRR=prr, PRR_lo=np.exp(np.log(prr) - Z975 * se), PRR_hi=np.exp(np.log(prr) + Z975 * se),
                    chisq=chisq, ROR=ror, ROR_lo=np.exp(np.log(ror) - Z975 * se2),
                    ROR_hi=np.exp(np.log(ror) + Z975 * se2), IC=ic, IC025=ic025, IC975=ic975)


# ----------------------------------------------------------------------------
# MGPS (openEBGM negLLsquash / autoSquash / posterior), independent of the Rust code
def neg_ll(theta, n, E, w, nstar):
    a1, b1, a2, b2, P = theta
    f1 = stats.nbinom.logpmf(n, a1, b1 / (b1 + E))
    f2 = stats.nbinom.logpmf(n, a2, b2 / (b2 + E))
    f1 = f1 - stats.nbinom.logsf(nstar - 1, a1, b1 / (b1 + E))
    f2 = f2 - stats.nbinom.logsf(nstar - 1, a2, b2 / (b2 + E))
    ll = np.logaddexp(np.log(P) + f1, np.log1p(-P) + f2)
    return -np.sum(w * ll)


def fit(n, E, w, nstar):
    def obj(u):
        th = np.concatenate([np.exp(u[:4]), [special.expit(u[4])]])
        v = neg_ll(th, n, E, w, nstar)
        return v if np.isfinite(v) else 1e300

    best = None
    for s in STARTS:
        u0 = np.concatenate([np.log(s[:4]), [special.logit(s[4])]])
        r = optimize.minimize(obj, u0, method="Nelder-Mead",
                              options=dict(xatol=1e-10, fatol=1e-12, maxiter=40000, maxfev=80000))
        r2 = optimize.minimize(obj, r.x, method="BFGS", options=dict(gtol=1e-9, maxiter=2000))
        x = r2.x if r2.fun <= r.fun else r.x
        r3 = optimize.minimize(obj, x, method="Nelder-Mead",
                               options=dict(xatol=1e-12, fatol=1e-14, maxiter=40000, maxfev=80000))
        x, f = (r3.x, r3.fun) if r3.fun <= obj(x) else (x, obj(x))
        th = np.concatenate([np.exp(x[:4]), [special.expit(x[4])]])
        inb = np.all(th[:4] < 100) and 0 < th[4] < 1
        if inb and (best is None or f < best[1]):
            best = (th, f)
    th, f = best
    return dict(alpha1=th[0], beta1=th[1], alpha2=th[2], beta2=th[3], p=th[4], loglik=-f)


def auto_squash(n, E):
    keep_pts = [100, 75, 50, 25]
    cuts = [500, 1e3, 1e4, 1e5, 5e5, 1e6, 5e6]
    supers = [50, 75, 150, 500, 750, 1e3, 2e3, 5e3]
    vals, cnt = np.unique(n, return_counts=True)
    squashed_counts = [v for v, c in zip(vals, cnt) if c > max(keep_pts) + 1]
    outn, oute, outw = [], [], []
    for v in vals:
        sel = np.sort(E[n == v], kind="stable")
        if v not in squashed_counts:
            outn += [v] * len(sel); oute += list(sel); outw += [1.0] * len(sel)
            continue
        pos = squashed_counts.index(v)
        keep = keep_pts[min(pos, len(keep_pts) - 1)]
        num = len(sel) - keep
        k = next((i for i, c in enumerate(cuts) if num < c), len(cuts))
        bin_size = max(int(np.floor(num / supers[k])), 2)
        body, kept = sel[:num], sel[num:]
        for s in range(0, num, bin_size):
            chunk = body[s:s + bin_size]
            outn.append(v); oute.append(chunk.mean()); outw.append(float(len(chunk)))
        outn += [v] * len(kept); oute += list(kept); outw += [1.0] * len(kept)
    return np.array(outn), np.array(oute), np.array(outw)


def posterior(prior, n, E):
    a1, b1, a2, b2, P = (prior[k] for k in ("alpha1", "beta1", "alpha2", "beta2", "p"))
    n = np.asarray(n, dtype=float)
    l1 = np.log(P) + stats.nbinom.logpmf(n, a1, b1 / (b1 + E))
    l2 = np.log1p(-P) + stats.nbinom.logpmf(n, a2, b2 / (b2 + E))
    Q = np.exp(l1 - np.logaddexp(l1, l2))
    elog = Q * (special.digamma(a1 + n) - np.log(b1 + E)) + (1 - Q) * (special.digamma(a2 + n) - np.log(b2 + E))
    ebgm = np.exp(elog)

    def quant(p, q, nn, e):
        f = lambda x: q * special.gammainc(a1 + nn, (b1 + e) * x) + (1 - q) * special.gammainc(a2 + nn, (b2 + e) * x) - p
        hi = 1.0
        while f(hi) < 0:
            hi *= 2
        lo = hi
        while f(lo) > 0:
            lo /= 2
        return optimize.brentq(f, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)

    eb05 = np.array([quant(0.05, q, nn, e) for q, nn, e in zip(Q, n, E)])
    eb95 = np.array([quant(0.95, q, nn, e) for q, nn, e in zip(Q, n, E)])
    return ebgm, eb05, eb95


def fmt(x):
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return repr(float(x))


def write_csv(path, header, cols):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for row in zip(*cols):
            f.write(",".join(r if isinstance(r, str) else fmt(r) for r in row) + "\n")


def full(rows, strata, name, squash=True, extra_prior_name=None):
    res = count(rows, strata)
    d, e, a, b, c, dd, E = (list(x) for x in zip(*res))
    E = np.array(E)
    n = np.array(a)
    m = measures(a, b, c, dd, E)
    sn, se_, sw = auto_squash(n, E) if squash else (n, E, np.ones(len(n)))
    prior = fit(sn, se_, sw, 1)
    with open(os.path.join(OUT, f"{name}.prior.json"), "w") as f:
        json.dump({k: float(v) for k, v in prior.items()}, f, indent=1)
    ebgm, eb05, eb95 = posterior(prior, n, E)
    header = ["drug", "event", "a", "b", "c", "d", "E"] + list(m.keys()) + ["EBGM", "EB05", "EB95"]
    write_csv(os.path.join(OUT, f"{name}.csv"), header,
              [d, e, a, b, c, dd, E] + [m[k] for k in m] + [ebgm, eb05, eb95])
    if extra_prior_name:
        p2 = fit(n, E, np.ones(len(n)), 1)
        with open(os.path.join(OUT, f"{extra_prior_name}.prior.json"), "w") as f:
            json.dump({k: float(v) for k, v in p2.items()}, f, indent=1)
    return prior


def main():
    os.makedirs(OUT, exist_ok=True)
    rows = make_reports()
    write_csv(os.path.join(OUT, "pairs_small.csv"), ["report_id", "drug", "event", "sex", "agegrp"],
              list(zip(*rows)))
    print("rows", len(rows))
    p = full(rows, None, "ref_report", squash=True, extra_prior_name="ref_report_nosquash")
    print("report prior", p)
    p = full(rows, [0, 1], "ref_strat", squash=True)
    print("strat prior", p)
    res = count(rows, None, cellsum=True)
    d, e, a, b, c, dd, E = (list(x) for x in zip(*res))
    m = measures(a, b, c, dd, np.array(E))
    write_csv(os.path.join(OUT, "ref_cellsum.csv"), ["drug", "event", "a", "b", "c", "d", "E", "PRR", "ROR", "chisq"],
              [d, e, a, b, c, dd, E, m["PRR"], m["ROR"], m["chisq"]])
    # (n, E) drawn from a known mixture: the MLE is interior and well identified.
    rng = np.random.default_rng(11)
    K = 60000
    E = np.exp(rng.normal(-1.5, 1.3, K))
    comp = rng.random(K) < 0.25
    lam = np.where(comp, rng.gamma(1.5, 1 / 0.3, K), rng.gamma(4.0, 1 / 5.0, K))
    n = rng.poisson(lam * E)
    keep = n >= 1
    n, E = n[keep], E[keep]
    write_csv(os.path.join(OUT, "fitpoints.csv"), ["n", "E"], [list(n), list(E)])
    for nstar in (1,):  # N* = 2 is fitted by fit_nstar2.py (slow likelihood)
        sel = n >= nstar
        pr = fit(n[sel], E[sel], np.ones(sel.sum()), nstar)
        with open(os.path.join(OUT, f"fitpoints_nstar{nstar}.prior.json"), "w") as f:
            json.dump({k: float(v) for k, v in pr.items()}, f, indent=1)
        print("fitpoints", nstar, sel.sum(), pr)


if __name__ == "__main__":
    main()
