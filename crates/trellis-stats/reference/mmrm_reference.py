#!/usr/bin/env python3
"""Independent reference implementation of MMRM (REML) for trellis-stats' tests.

No Python package fits an MMRM, so this script implements one directly with numpy/scipy and
shares nothing with the Rust code path:

* the REML deviance is computed by generalised least squares on the stacked subject blocks
  (batched per missing-visit pattern with numpy einsum), straight from the formula
      D(theta) = sum_i log|Sigma_i| + log|X'V^-1 X| + r'V^-1 r + (n - p) log(2 pi);
  (Rust instead accumulates per-pattern cross-product statistics and has an analytic
  gradient);
* the optimiser is scipy BFGS on finite-difference gradients, polished by Newton steps on
  a finite-difference (Richardson-extrapolated) Hessian;
* Satterthwaite degrees of freedom use numerical derivatives only: the Hessian of D and the
  Jacobian of (X'V^-1 X)^-1 with respect to theta, both by central differences with
  Richardson extrapolation;
* Kenward-Roger: P, Q, R and W by numerical differentiation in SAS's covariance
  parametrisation (kr_adjusted);
* type III F tests: Satterthwaite (SAS / mmrm h_df_md_sat) or Kenward-Roger (h_kr_df) on
  LS-mean contrasts.

The formulas (REML deviance, Satterthwaite, Kenward-Roger, the multi-df F rules) are the
published ones, so agreement with the Rust code checks the implementation, not the choice of
formula; the one-off comparisons with SAS / R mmrm output in the crate README check that.

Usage:
    python reference/mmrm_reference.py            # writes fixtures/admmrm.csv and mmrm_reference.json
    python reference/mmrm_reference.py fit CSV RESPONSE SUBJECT VISIT BY REF COVS [vbc] [us|cs|ar1]
                                                  # prints one fit as JSON (for one-off checks)
    python reference/mmrm_reference.py bench CSV [fit-only]
                                                  # times one fit (benches/stats.rs)
"""
import json
import os
import re
import sys
import time

import numpy as np
import pandas as pd
import scipy
import scipy.linalg as sla
import scipy.optimize as so
import scipy.stats as st

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")


def natural_key(s):
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.findall(r"\d+|\D+", str(s))]


# ---------------------------------------------------------------------------------------
# covariance structures: theta -> Sigma (m x m)
# ---------------------------------------------------------------------------------------
def sigma_us(theta, m):
    L = np.zeros((m, m))
    L[np.diag_indices(m)] = np.exp(theta[:m])
    L[np.tril_indices(m, -1)] = theta[m:]
    return L @ L.T


def sigma_cs(theta, m):
    s2 = np.exp(theta[0])
    lo = -1.0 / (m - 1)
    rho = lo + (1.0 - lo) / (1.0 + np.exp(-theta[1]))
    return s2 * ((1 - rho) * np.eye(m) + rho * np.ones((m, m)))


def sigma_ar1(theta, m):
    s2 = np.exp(theta[0])
    rho = np.tanh(theta[1])
    i = np.arange(m)
    return s2 * rho ** np.abs(i[:, None] - i[None, :])


COV = {"us": sigma_us, "cs": sigma_cs, "ar1": sigma_ar1}


# SAS parametrisations (Kenward-Roger's R term depends on the parametrisation; SAS uses these)
def nat_us(phi, m):
    S = np.zeros((m, m))
    S[np.tril_indices(m)] = phi  # row by row: (0,0), (1,0), (1,1), (2,0), ...
    return S + np.tril(S, -1).T


def nat_cs(phi, m):
    return phi[0] * np.ones((m, m)) + phi[1] * np.eye(m)


def nat_ar1(phi, m):
    i = np.arange(m)
    return phi[0] * phi[1] ** np.abs(i[:, None] - i[None, :])


def to_nat(cov, S):
    m = S.shape[0]
    if cov == "us":
        return S[np.tril_indices(m)]
    if cov == "cs":
        return np.array([S[0, 1], S[0, 0] - S[0, 1]])
    return np.array([S[0, 0], S[0, 1] / S[0, 0]])


NAT = {"us": nat_us, "cs": nat_cs, "ar1": nat_ar1}


def ntheta(cov, m):
    return m * (m + 1) // 2 if cov == "us" else 2


# ---------------------------------------------------------------------------------------
# design
# ---------------------------------------------------------------------------------------
def build(df, response, subject, visit, by, ref, covariates, vbc, factors_ref=None, visit_terms=True):
    """Long data -> per-pattern blocks. Returns dict with X blocks, names, L vectors."""
    factors_ref = factors_ref or {}
    used = [response, subject, visit, by] + covariates
    d = df.copy()
    for c in used:
        if not pd.api.types.is_numeric_dtype(d[c]):
            d[c] = d[c].where(d[c].astype(str).str.strip() != "", np.nan)
    d = d.dropna(subset=used).reset_index(drop=True)
    vis = sorted(d[visit].astype(str).unique(), key=natural_key)
    arms = sorted(d[by].astype(str).unique())
    arms.remove(ref)
    arms = [ref] + arms
    m = len(vis)
    cols = []  # (name, function(row-frame) -> vector)
    names = ["Intercept"]
    X = [np.ones(len(d))]
    trt = d[by].astype(str).values
    vv = d[visit].astype(str).values
    for a in arms[1:]:
        names.append(f"{by}={a}")
        X.append((trt == a).astype(float))
    for v in vis[1:] if visit_terms else []:
        names.append(f"{visit}={v}")
        X.append((vv == v).astype(float))
    for a in arms[1:] if visit_terms else []:
        for v in vis[1:]:
            names.append(f"{by}={a}:{visit}={v}")
            X.append(((trt == a) & (vv == v)).astype(float))
    cont_means = {}
    fac_levels = {}
    for c in covariates:
        if not pd.api.types.is_numeric_dtype(d[c]):
            lv = sorted(d[c].astype(str).unique())
            r = factors_ref.get(c, lv[0])
            lv.remove(r)
            lv = [r] + lv
            fac_levels[c] = lv
            for l in lv[1:]:
                names.append(f"{c}={l}")
                X.append((d[c].astype(str).values == l).astype(float))
        else:
            x = d[c].astype(float).values
            cont_means[c] = x.mean()
            names.append(c)
            X.append(x)
    if vbc:
        for c in covariates:
            if c in cont_means:
                x = d[c].astype(float).values
                for v in vis[1:]:
                    names.append(f"{c}:{visit}={v}")
                    X.append(x * (vv == v))
    X = np.column_stack(X)
    y = d[response].astype(float).values
    vidx = np.array([vis.index(v) for v in vv])
    subj = d[subject].astype(str).values
    # group rows by subject, sort by visit
    order = np.lexsort((vidx, subj))
    X, y, vidx, subj = X[order], y[order], vidx[order], subj[order]
    _, start = np.unique(subj, return_index=True)
    start = np.sort(start)
    bounds = list(start) + [len(y)]
    pats = {}
    for s, e in zip(bounds[:-1], bounds[1:]):
        key = tuple(vidx[s:e])
        if len(set(key)) != len(key):
            raise SystemExit("duplicate visit within a subject")
        pats.setdefault(key, []).append((s, e))
    blocks = []
    for key, rng in pats.items():
        idx = np.array(key)
        Xb = np.stack([X[s:e] for s, e in rng])
        yb = np.stack([y[s:e] for s, e in rng])
        blocks.append((idx, Xb, yb))

    # LS-mean vectors: covariates at their means over the analysis rows, equal weights over
    # factor levels (emmeans / SAS LSMEANS defaults)
    def lvec(a, v):
        l = np.zeros(len(names))
        l[0] = 1
        if a > 0:
            l[names.index(f"{by}={arms[a]}")] = 1
        if v > 0 and visit_terms:
            l[names.index(f"{visit}={vis[v]}")] = 1
        if a > 0 and v > 0 and visit_terms:
            l[names.index(f"{by}={arms[a]}:{visit}={vis[v]}")] = 1
        for c, lv in fac_levels.items():
            for lname in lv[1:]:
                l[names.index(f"{c}={lname}")] = 1.0 / len(lv)
        for c, mu in cont_means.items():
            l[names.index(c)] = mu
            if vbc and v > 0:
                l[names.index(f"{c}:{visit}={vis[v]}")] = mu
        return l

    counts = {(a, v): int(((trt == arms[a]) & (vv == vis[v])).sum()) for a in range(len(arms)) for v in range(m)}
    # type III hypotheses from LS-mean vectors (equal weights over the other factor)
    na = len(arms)
    P = X.shape[1]
    e = lambda nm: np.eye(P)[names.index(nm)]
    type3 = [(by, [np.mean([lvec(a, v) - lvec(0, v) for v in range(m)], axis=0) for a in range(1, na)])]
    if visit_terms:
        type3.append((visit, [np.mean([lvec(a, v) - lvec(a, 0) for a in range(na)], axis=0) for v in range(1, m)]))
        type3.append((f"{by}*{visit}", [lvec(a, v) - lvec(0, v) - lvec(a, 0) + lvec(0, 0)
                                        for a in range(1, na) for v in range(1, m)]))
    for c in covariates:
        if c in fac_levels:
            type3.append((c, [e(f"{c}={l}") for l in fac_levels[c][1:]]))
        else:
            l = e(c)
            if vbc:
                l = l + sum(e(f"{c}:{visit}={v}") for v in vis[1:]) / m
            type3.append((c, [l]))
            if vbc:
                type3.append((f"{c}*{visit}", [e(f"{c}:{visit}={v}") for v in vis[1:]]))
    return dict(blocks=blocks, names=names, m=m, vis=vis, arms=arms, lvec=lvec, n=len(y),
                nsubj=len(bounds) - 1, p=X.shape[1], counts=counts, type3=type3)


# ---------------------------------------------------------------------------------------
# REML
# ---------------------------------------------------------------------------------------
def gls(theta, D, cov, S=None):
    if S is None:
        S = COV[cov](theta, D["m"])
    p = D["p"]
    XtWX = np.zeros((p, p))
    XtWy = np.zeros(p)
    ldet = 0.0
    Ws = []
    for idx, Xb, yb in D["blocks"]:
        Sk = S[np.ix_(idx, idx)]
        c = sla.cho_factor(Sk, lower=True)
        W = sla.cho_solve(c, np.eye(len(idx)))
        Ws.append(W)
        ldet += Xb.shape[0] * 2 * np.log(np.diag(c[0])).sum()
        WX = np.einsum("ab,nbp->nap", W, Xb)
        XtWX += np.einsum("nap,naq->pq", Xb, WX)
        XtWy += np.einsum("nap,na->p", WX, yb)
    return S, Ws, XtWX, XtWy, ldet


def deviance(theta, D, cov, full=False, S=None):
    try:
        S, Ws, M, b, ldet = gls(theta, D, cov, S)
        cM = sla.cho_factor(M, lower=True)
    except (np.linalg.LinAlgError, ValueError):
        return np.inf if not full else None
    beta = sla.cho_solve(cM, b)
    q = 0.0
    for (idx, Xb, yb), W in zip(D["blocks"], Ws):
        r = yb - np.einsum("nap,p->na", Xb, beta)
        q += np.einsum("na,ab,nb->", r, W, r)
    dev = ldet + 2 * np.log(np.diag(cM[0])).sum() + q + (D["n"] - D["p"]) * np.log(2 * np.pi)
    if full:
        return dev, beta, sla.cho_solve(cM, np.eye(D["p"])), S
    return dev


def num_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for j in range(len(x)):
        e = np.zeros_like(x)
        e[j] = h
        g[j] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def num_hess(f, x, h=1e-3):
    """Central second differences, Richardson-extrapolated over steps 2h and h (h may be a
    vector of per-coordinate steps)."""
    hv = np.broadcast_to(np.asarray(h, dtype=float), x.shape)

    def H(mult):
        k = len(x)
        out = np.zeros((k, k))
        for i in range(k):
            for j in range(i, k):
                ei = np.zeros(k)
                ej = np.zeros(k)
                ei[i] = mult * hv[i]
                ej[j] = mult * hv[j]
                v = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * ei[i] * ej[j])
                out[i, j] = out[j, i] = v
        return out
    return (4 * H(1.0) - H(2.0)) / 3


def num_jac(f, x, h=1e-4):
    """Jacobian of an array-valued f by central differences, Richardson over 2h and h (h may
    be a vector of per-coordinate steps)."""
    hv = np.broadcast_to(np.asarray(h, dtype=float), x.shape)

    def J(mult):
        cols = []
        for j in range(len(x)):
            e = np.zeros_like(x)
            e[j] = mult * hv[j]
            cols.append((f(x + e) - f(x - e)) / (2 * e[j]))
        return np.stack(cols)
    return (4 * J(1.0) - J(2.0)) / 3


def kr_adjusted(D, cov, theta):
    """Kenward-Roger adjusted covariance of beta-hat, everything by numerical differentiation
    in SAS's parametrisation phi: W from the numerical Hessian of the REML deviance in phi,
    P_h = d(X'V^-1 X)/dphi_h, Q_hj = sum_i X_i' dW_h Sigma_i dW_j X_i with dW the numerical
    derivative of Sigma_i^-1, R_hj = sum_i X_i' W_i d2Sigma_i W_i X_i with numerical d2Sigma."""
    m, p = D["m"], D["p"]
    S0 = COV[cov](theta, m)
    phi0 = to_nat(cov, S0)
    Sf = lambda ph: NAT[cov](ph, m)
    step = 1e-4 * np.maximum(np.abs(phi0), 1e-2)
    Dphi = lambda ph: deviance(None, D, cov, S=Sf(ph))
    W = 2 * np.linalg.inv(num_hess(Dphi, phi0, step * 10))
    Mf = lambda ph: gls(None, D, cov, S=Sf(ph))[2]
    P = num_jac(Mf, phi0, step)  # (q, p, p)
    Phi = np.linalg.inv(Mf(phi0))
    q = len(phi0)
    Q = np.zeros((q, q, p, p))
    R = np.zeros((q, q, p, p))
    d2S = np.zeros((q, q, m, m))
    for h in range(q):
        for j in range(q):
            eh = np.zeros(q)
            ej = np.zeros(q)
            eh[h] = step[h] * 10
            ej[j] = step[j] * 10
            d2S[h, j] = (Sf(phi0 + eh + ej) - Sf(phi0 + eh - ej) - Sf(phi0 - eh + ej)
                         + Sf(phi0 - eh - ej)) / (4 * eh[h] * ej[j])
    for idx, Xb, yb in D["blocks"]:
        Sk = S0[np.ix_(idx, idx)]
        Wk = np.linalg.inv(Sk)
        dW = num_jac(lambda ph: np.linalg.inv(Sf(ph)[np.ix_(idx, idx)]), phi0, step)
        for h in range(q):
            A = dW[h] @ Sk
            for j in range(q):
                G = A @ dW[j]
                Q[h, j] += np.einsum("nap,ab,nbq->pq", Xb, G, Xb)
                R[h, j] += np.einsum("nap,ab,nbq->pq", Xb, Wk @ d2S[h, j][np.ix_(idx, idx)] @ Wk, Xb)
    mid = np.zeros((p, p))
    for h in range(q):
        for j in range(q):
            mid += W[h, j] * (Q[h, j] - P[h] @ Phi @ P[j] - 0.25 * R[h, j])
    return Phi + 2 * Phi @ mid @ Phi


def start_theta(D, cov):
    # OLS residual variance per visit
    p, m = D["p"], D["m"]
    XtX = np.zeros((p, p))
    Xty = np.zeros(p)
    for idx, Xb, yb in D["blocks"]:
        XtX += np.einsum("nap,naq->pq", Xb, Xb)
        Xty += np.einsum("nap,na->p", Xb, yb)
    beta = np.linalg.solve(XtX, Xty)
    ss = np.zeros(m)
    cnt = np.zeros(m)
    for idx, Xb, yb in D["blocks"]:
        r = yb - np.einsum("nap,p->na", Xb, beta)
        ss[idx] += (r * r).sum(0)
        cnt[idx] += Xb.shape[0]
    var = ss / cnt
    if cov == "us":
        return np.concatenate([0.5 * np.log(var), np.zeros(m * (m - 1) // 2)])
    return np.array([np.log(var.mean()), 0.0])


TIMES = {}


class BfgsOnly(Exception):
    pass


def fit(D, cov="us", alpha=0.05, df_method="satterthwaite", bfgs_only=False):
    f = lambda t: deviance(t, D, cov)
    t0 = start_theta(D, cov)
    r = so.minimize(f, t0, jac=lambda t: num_grad(f, t), method="BFGS",
                    options=dict(gtol=1e-7, maxiter=2000))
    theta = r.x
    TIMES["bfgs_done"] = time.perf_counter()
    if bfgs_only:
        TIMES["bfgs_deviance"] = r.fun
        raise BfgsOnly()
    for _ in range(8):  # Newton polish
        g = num_grad(f, theta)
        H = num_hess(f, theta)
        step = np.linalg.solve(H, g)
        theta = theta - step
        if np.max(np.abs(step)) < 1e-11:
            break
    dev, beta, Phi, S = deviance(theta, D, cov, full=True)
    H = num_hess(f, theta)
    A = 2 * np.linalg.inv(H)  # asymptotic covariance of theta-hat (H: Hessian of -2 logL_R)
    Jphi = num_jac(lambda t: deviance(t, D, cov, full=True)[2], theta)  # (q, p, p)
    V = Phi if df_method == "satterthwaite" else kr_adjusted(D, cov, theta)

    def sat(l):
        # df: Satterthwaite with the unadjusted Phi (also the 1-d Kenward-Roger df)
        v = l @ Phi @ l
        g = np.einsum("p,jpq,q->j", l, Jphi, l)
        return l @ V @ l, 2 * v * v / (g @ A @ g)

    q = len(theta)
    type3 = []
    for term, rows in D["type3"]:
        L = np.array(rows)
        c = L.shape[0]
        if df_method == "satterthwaite":
            # eigen-directions of L Phi L', each with its 1-d df (SAS / mmrm h_df_md_sat)
            vals, vecs = np.linalg.eigh(L @ Phi @ L.T)
            order = np.argsort(vals)[::-1]
            vals, vecs = vals[order], vecs[:, order]
            r = int((vals > np.sqrt(np.finfo(float).eps) * max(vals[0], 0)).sum())
            Lk = vecs[:, :r].T @ L
            F = sum((lk @ beta) ** 2 / vk for lk, vk in zip(Lk, vals[:r])) / r
            nus = np.array([sat(lk)[1] for lk in Lk])
            if r == 1:
                dfd = nus[0]
            elif np.all(np.abs(np.diff(nus)) < np.sqrt(np.finfo(float).eps)):
                dfd = nus.mean()
            elif np.any(nus <= 2):
                dfd = 2.0
            else:
                E = (nus / (nus - 2)).sum()
                dfd = 2 * E / (E - r)
        else:
            # Kenward & Roger (1997) df and scale, P from the numerical Jacobian of Phi
            r = c
            M = L.T @ np.linalg.inv(L @ Phi @ L.T) @ L
            MP = [-M @ J for J in Jphi]  # M Phi P_h Phi = -M dPhi/dtheta_h
            a1 = sum(A[i, j] * np.trace(MP[i]) * np.trace(MP[j]) for i in range(q) for j in range(q))
            a2 = sum(A[i, j] * np.trace(MP[i] @ MP[j]) for i in range(q) for j in range(q))
            b = (a1 + 6 * a2) / (2 * c)
            es = 1 / (1 - a2 / c)
            g = ((c + 1) * a1 - (c + 4) * a2) / ((c + 2) * a2)
            den = 3 * c + 2 - 2 * g
            c1, c2, c3 = g / den, (c - g) / den, (c + 2 - g) / den
            vs = 2 / c * (1 + c1 * b) / (1 - c2 * b) ** 2 / (1 - c3 * b)
            rho = vs / (2 * es ** 2)
            dfd = 4 + (c + 2) / (c * rho - 1)
            lam = dfd / (es * (dfd - 2))
            Lb = L @ beta
            F = lam * (Lb @ np.linalg.solve(L @ V @ L.T, Lb)) / c
        type3.append(dict(term=term, num_df=r, den_df=dfd, f=F, p=st.f.sf(F, r, dfd)))
    coefs = []
    for j, nm in enumerate(D["names"]):
        l = np.zeros(D["p"])
        l[j] = 1
        v, df = sat(l)
        se = np.sqrt(v)
        t = beta[j] / se
        coefs.append(dict(term=nm, estimate=beta[j], se=se, df=df, t=t, p=2 * st.t.sf(abs(t), df)))
    lsm, diffs = [], []
    arms, vis = D["arms"], D["vis"]
    for v in range(D["m"]):
        for a in range(len(arms)):
            l = D["lvec"](a, v)
            var, df = sat(l)
            est = l @ beta
            se = np.sqrt(var)
            tq = st.t.ppf(1 - alpha / 2, df)
            lsm.append(dict(arm=arms[a], visit=vis[v], n=D["counts"][(a, v)], estimate=est, se=se, df=df,
                            lo=est - tq * se, hi=est + tq * se))
        for a in range(1, len(arms)):
            l = D["lvec"](a, v) - D["lvec"](0, v)
            var, df = sat(l)
            est = l @ beta
            se = np.sqrt(var)
            tq = st.t.ppf(1 - alpha / 2, df)
            t = est / se
            diffs.append(dict(arm=arms[a], reference=arms[0], visit=vis[v], estimate=est, se=se, df=df,
                              lo=est - tq * se, hi=est + tq * se, t=t, p=2 * st.t.sf(abs(t), df)))
    return dict(df_method=df_method, deviance=dev, loglik=-dev / 2, aic=dev + 2 * q, bic=dev + q * np.log(D["nsubj"]),
                n_obs=D["n"], n_subjects=D["nsubj"], n_theta=q, theta=theta.tolist(),
                grad_norm=float(np.max(np.abs(num_grad(f, theta)))),
                covariance=S.tolist(), coefficients=coefs, type3=type3, lsmeans=lsm, diffs=diffs)


def clean(o):
    if isinstance(o, dict):
        return {k: clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [clean(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return float(o)
    if isinstance(o, np.integer):
        return int(o)
    return o


# ---------------------------------------------------------------------------------------
# fixture data
# ---------------------------------------------------------------------------------------
def make_data():
    rng = np.random.default_rng(20261125)
    n = 180
    vis = ["Week 2", "Week 4", "Week 8", "Week 12"]
    Sigma = np.array([[16.0, 8.0, 6.0, 5.0], [8.0, 20.0, 11.0, 9.0], [6.0, 11.0, 25.0, 15.0],
                      [5.0, 9.0, 15.0, 36.0]])
    Lc = np.linalg.cholesky(Sigma)
    arms = np.array(["Placebo", "Low", "High"])[rng.integers(0, 3, n)]
    region = np.array(["EUR", "USA", "ROW"])[rng.integers(0, 3, n)]
    base = np.round(rng.normal(50, 8, n), 1)
    eff = {"Placebo": [0, 0, 0, 0], "Low": [-0.5, -1.0, -1.8, -2.5], "High": [-1.0, -2.0, -3.0, -4.5]}
    rows = []
    for i in range(n):
        e = Lc @ rng.normal(size=4)
        # monotone dropout plus intermittent missing visits
        last = 4 if rng.uniform() > 0.25 else rng.integers(1, 4)
        for v in range(4):
            if v >= last or rng.uniform() < 0.07:
                continue
            mu = -1.0 - 0.6 * v + eff[arms[i]][v] - 0.15 * (base[i] - 50) * (1 + 0.3 * v) \
                + {"EUR": 0.0, "USA": 0.8, "ROW": -0.5}[region[i]]
            rows.append(dict(USUBJID=f"S{i + 1:04d}", TRT01P=arms[i], AVISIT=vis[v], AVISITN=v + 1,
                             REGION=region[i], BASE=base[i], CHG=round(mu + e[v], 3)))
    # a few subjects with a missing response row kept in the file (dropped by the analysis)
    rows.append(dict(USUBJID="S0001", TRT01P=arms[0], AVISIT="Week 16", AVISITN=5, REGION=region[0],
                     BASE=base[0], CHG=np.nan))
    return pd.DataFrame(rows)


MODELS = [
    # name, covariates, visit-by-covariate, covariance, df method
    ("us_base_vbc", ["BASE"], True, "us", "satterthwaite"),
    ("us_base_region", ["BASE", "REGION"], False, "us", "satterthwaite"),
    ("cs_base", ["BASE"], False, "cs", "satterthwaite"),
    ("ar1_base", ["BASE"], False, "ar1", "satterthwaite"),
    ("us_base_vbc_kr", ["BASE"], True, "us", "kr"),
    ("cs_base_kr", ["BASE"], False, "cs", "kr"),
    ("ar1_base_kr", ["BASE"], False, "ar1", "kr"),
]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "fit":
        _, _, csv, resp, subj, visit, by, ref, covs, *rest = sys.argv
        vbc = "vbc" in rest
        cov = next((r for r in rest if r in COV), "us")
        refs = dict(kv.split("=", 1) for kv in rest if "=" in kv)
        df = pd.read_csv(csv)
        D = build(df, resp, subj, visit, by, ref, [c for c in covs.split(",") if c], vbc, refs,
                  visit_terms="novisit" not in rest)
        dfm = "kr" if "kr" in rest else "satterthwaite"
        print(json.dumps(clean(fit(D, cov, df_method=dfm)), indent=1))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "bench":
        df = pd.read_csv(sys.argv[2])
        only = len(sys.argv) > 3 and sys.argv[3] == "fit-only"
        t0 = time.perf_counter()
        D = build(df, "CHG", "USUBJID", "AVISIT", "TRT01P", "Placebo", ["BASE"], True)
        if only:  # design + BFGS only (minutes at 100k subjects otherwise)
            try:
                fit(D, "us", bfgs_only=True)
            except BfgsOnly:
                pass
            print(json.dumps({"fit_seconds": TIMES["bfgs_done"] - t0,
                              "deviance": TIMES["bfgs_deviance"]}))
            return
        r = fit(D, "us")
        t1 = time.perf_counter()
        # "fit_seconds": design + BFGS on the REML deviance (what the research note's 59 s
        # anchor measures); "seconds": everything incl. the Newton polish and Satterthwaite df
        print(json.dumps({"seconds": t1 - t0, "fit_seconds": TIMES["bfgs_done"] - t0,
                          "deviance": r["deviance"]}))
        return
    os.makedirs(OUT, exist_ok=True)
    df = make_data()
    path = os.path.join(OUT, "admmrm.csv")
    df.to_csv(path, index=False)
    df = pd.read_csv(path)
    out = dict(source=dict(script="reference/mmrm_reference.py", numpy=np.__version__,
                           scipy=scipy.__version__, pandas=pd.__version__,
                           python=sys.version.split()[0]), models={})
    for name, covs, vbc, cov, dfm in MODELS:
        D = build(df, "CHG", "USUBJID", "AVISIT", "TRT01P", "Placebo", covs, vbc)
        r = fit(D, cov, df_method=dfm)
        r.update(covariates=covs, visit_by_covariate=vbc, cov=cov)
        out["models"][name] = r
        print(name, "deviance", r["deviance"], "max|grad|", r["grad_norm"], file=sys.stderr)
    with open(os.path.join(OUT, "mmrm_reference.json"), "w") as fh:
        json.dump(clean(out), fh, indent=1)


if __name__ == "__main__":
    main()
