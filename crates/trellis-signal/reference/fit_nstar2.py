#!/usr/bin/env python3
"""Writes fixtures/fitpoints_nstar2.prior.json: the N* = 2 truncated-likelihood
MLE on fixtures/fitpoints.csv, with make_fixtures.neg_ll (scipy.stats.nbinom).
Split out of make_fixtures.py because that likelihood costs ~15 ms per
evaluation at N* = 2; this uses two of the openEBGM starts and smaller
Nelder-Mead budgets, then BFGS and a final Nelder-Mead polish.

On these points the N* = 2 likelihood has its supremum on the boundary: the
second component degenerates to a point mass (alpha2, beta2 -> infinity with
alpha2/beta2 fixed), so no in-bounds filter is applied here and the Rust test
compares the log-likelihood, alpha1, beta1, p and the mean alpha2/beta2."""
import json
import os

import numpy as np
from scipy import optimize, special

import make_fixtures as m

here = os.path.dirname(os.path.abspath(__file__))
d = np.loadtxt(os.path.join(here, "fixtures", "fitpoints.csv"), delimiter=",", skiprows=1)
n, E = d[:, 0], d[:, 1]
sel = n >= 2
n, E = n[sel], E[sel]
w = np.ones(len(n))


def obj(u):
    th = np.concatenate([np.exp(u[:4]), [special.expit(u[4])]])
    v = m.neg_ll(th, n, E, w, 2)
    return v if np.isfinite(v) else 1e300


best = None
for s in m.STARTS[:2]:
    u0 = np.concatenate([np.log(s[:4]), [special.logit(s[4])]])
    r = optimize.minimize(obj, u0, method="Nelder-Mead",
                          options=dict(xatol=1e-9, fatol=1e-11, maxfev=4000))
    r2 = optimize.minimize(obj, r.x, method="BFGS", options=dict(gtol=1e-8, maxiter=300))
    x = r2.x if r2.fun <= r.fun else r.x
    r3 = optimize.minimize(obj, x, method="Nelder-Mead",
                           options=dict(xatol=1e-12, fatol=1e-14, maxfev=4000))
    x, f = (r3.x, r3.fun) if r3.fun <= obj(x) else (x, obj(x))
    th = np.concatenate([np.exp(x[:4]), [special.expit(x[4])]])
    print(s, th, f, flush=True)
    if best is None or f < best[1]:
        best = (th, f)
th, f = best
out = dict(alpha1=th[0], beta1=th[1], alpha2=th[2], beta2=th[3], p=th[4], loglik=-f)
with open(os.path.join(here, "fixtures", "fitpoints_nstar2.prior.json"), "w") as fh:
    json.dump({k: float(v) for k, v in out.items()}, fh, indent=1)
print(out)
