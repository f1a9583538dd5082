#!/usr/bin/env python3
"""Generates the datasets and reference values that trellis-stats is tested against.

Run from the crate directory with a venv holding lifelines, statsmodels, scipy, pandas and
pyreadstat (versions are recorded in fixtures/reference.json):

    python reference/make_reference.py

Writes reference/fixtures/*.csv, *.xpt and reference.json. Everything is generated from
fixed seeds; values come from the packages named in each entry's "source".
"""
import json
import os
import sys

import numpy as np
import pandas as pd
import scipy
import scipy.stats as st
import statsmodels
import statsmodels.api as sm
import statsmodels.formula.api as smf
from statsmodels.duration.survfunc import survdiff
from statsmodels.duration.hazard_regression import PHReg
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.contingency_tables import StratifiedTable
import lifelines
from lifelines import KaplanMeierFitter, CoxPHFitter
from lifelines.statistics import logrank_test, multivariate_logrank_test
from lifelines.utils import median_survival_times
import pyreadstat

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")
os.makedirs(OUT, exist_ok=True)
Z = st.norm.ppf(0.975)


def nn(x):
    """float or None for NaN/inf."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


# ---------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------
rng = np.random.default_rng(20261125)
n = 400
trt = rng.integers(0, 2, n)
arm3 = rng.integers(0, 3, n)
age = np.round(rng.normal(60, 10, n), 0)
x1 = np.round(rng.normal(0, 1, n), 4)
sex = rng.integers(0, 2, n)
strat = rng.integers(1, 5, n)
lin = 0.5 * trt - 0.02 * (age - 60) + 0.3 * x1 + 0.2 * sex
t_true = rng.exponential(365.0 / np.exp(lin))
c = rng.uniform(0, 900, n)
tcont = np.minimum(t_true, c)
event = (t_true <= c).astype(int)
aval = np.ceil(tcont / 7.0) * 7.0  # weekly visits: heavy ties
surv = pd.DataFrame(
    {
        "USUBJID": [f"S{i:04d}" for i in range(n)],
        "AVAL": aval,
        "AVALC": np.round(tcont, 6),
        "CNSR": 1 - event,
        "TRT01A": np.where(trt == 1, "Drug A", "Placebo"),
        "TRTN": trt,
        "ARM3": np.array(["A", "B", "C"])[arm3],
        "AGE": age,
        "SEX": np.where(sex == 1, "M", "F"),
        "SEXN": sex,
        "X1": x1,
        "STRAT": strat,
    }
)
surv.to_csv(os.path.join(OUT, "adtte.csv"), index=False)

# ANCOVA / logistic data
m = 240
trt3 = rng.integers(0, 3, m)
site = rng.integers(0, 5, m)
base = np.round(rng.normal(50, 8, m), 2)
chg = np.round(-2.0 * (trt3 == 1) - 3.5 * (trt3 == 2) + 0.8 * site - 0.3 * (base - 50) + rng.normal(0, 4, m), 3)
eta = -0.5 + 0.7 * (trt3 == 1) + 1.1 * (trt3 == 2) + 0.04 * (base - 50)
resp = (rng.uniform(size=m) < 1 / (1 + np.exp(-eta))).astype(int)
eff = pd.DataFrame(
    {
        "USUBJID": [f"E{i:04d}" for i in range(m)],
        "TRT01P": np.array(["Placebo", "Low", "High"])[trt3],
        "SITEID": np.array(["S01", "S02", "S03", "S04", "S05"])[site],
        "BASE": base,
        "CHG": chg,
        "RESP": resp,
    }
)
eff.to_csv(os.path.join(OUT, "adeff.csv"), index=False)

# Frequency data: 2 arms x response, 6 centres
k = 600
f_trt = rng.integers(0, 2, k)
f_ctr = rng.integers(0, 6, k)
pr = 0.25 + 0.15 * f_trt + 0.03 * f_ctr
f_resp = rng.uniform(size=k) < pr
freq = pd.DataFrame(
    {
        "TRT": np.where(f_trt == 1, "Active", "Control"),
        "RESP": np.where(f_resp, "Y", "N"),
        "CENTER": [f"C{c + 1}" for c in f_ctr],
    }
)
freq.to_csv(os.path.join(OUT, "adfreq.csv"), index=False)

# XPORT written by another tool (pyreadstat), with labels and formats
small = surv.head(60)[["USUBJID", "AVAL", "CNSR", "TRT01A", "AGE", "X1"]].copy()
small.loc[3, "AGE"] = np.nan
pyreadstat.write_xport(
    small,
    os.path.join(OUT, "adtte_pyreadstat.xpt"),
    file_format_version=5,
    table_name="ADTTE",
    column_labels=["Unique Subject Identifier", "Analysis Value", "Censor", "Actual Treatment", "Age", "Covariate X1"],
)
small.to_csv(os.path.join(OUT, "adtte_pyreadstat.csv"), index=False)
chk = pd.read_sas(os.path.join(OUT, "adtte_pyreadstat.xpt"), format="xport")
assert len(chk) == 60

ref = {
    "versions": {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "statsmodels": statsmodels.__version__,
        "lifelines": lifelines.__version__,
        "pyreadstat": pyreadstat.__version__,
    }
}

# ---------------------------------------------------------------------------------------
# Kaplan-Meier (lifelines), log-rank (lifelines, statsmodels)
# ---------------------------------------------------------------------------------------
km = []
for g in sorted(surv.TRT01A.unique()):
    d = surv[surv.TRT01A == g]
    kmf = KaplanMeierFitter().fit(d.AVAL, 1 - d.CNSR, alpha=0.05)
    sf = kmf.survival_function_.iloc[:, 0]
    ci = kmf.confidence_interval_
    et = kmf.event_table
    cs = kmf._cumulative_sq_
    med_ci = median_survival_times(kmf.confidence_interval_)
    pts = []
    for t in sf.index:
        if t == 0 and (d.AVAL != 0).all():
            continue  # lifelines adds t=0; trellis reports observed times only
        s = float(sf.loc[t])
        v = float(cs.loc[t])
        se = s * np.sqrt(v)
        pts.append(
            {
                "time": float(t),
                "n_risk": int(et.loc[t, "at_risk"]),
                "n_event": int(et.loc[t, "observed"]),
                "survival": s,
                "se": nn(se),
                "loglog_lo": nn(ci.iloc[:, 0].loc[t]),
                "loglog_hi": nn(ci.iloc[:, 1].loc[t]),
                # log and plain transforms from the same Greenwood variance (formulas, not a package)
                "log_lo": nn(s * np.exp(-Z * np.sqrt(v))) if s > 0 else None,
                "log_hi": nn(min(1.0, s * np.exp(Z * np.sqrt(v)))) if s > 0 else None,
                "plain_lo": nn(max(0.0, s - Z * se)) if s > 0 else None,
                "plain_hi": nn(min(1.0, s + Z * se)) if s > 0 else None,
            }
        )
    at = [100.0, 200.0, 365.0]
    km.append(
        {
            "group": g,
            "n": int(len(d)),
            "events": int((1 - d.CNSR).sum()),
            "median": nn(kmf.median_survival_time_),
            "median_lo": nn(med_ci.iloc[0, 0]),
            "median_hi": nn(med_ci.iloc[0, 1]),
            "at": at,
            "at_survival": [float(v) for v in kmf.survival_function_at_times(at).values],
            "curve": pts,
        }
    )
ref["km"] = {"source": "lifelines KaplanMeierFitter, by TRT01A, time AVAL, event 1-CNSR", "groups": km}

E = 1 - surv.CNSR
a = surv.TRT01A == "Drug A"
lr2 = logrank_test(surv.AVAL[a], surv.AVAL[~a], E[a], E[~a])
lr3 = multivariate_logrank_test(surv.AVAL, surv.ARM3, E)
sd_chi, sd_p = survdiff(surv.AVAL.values, E.values, surv.TRT01A.values)
st_chi, st_p = survdiff(surv.AVAL.values, E.values, surv.TRT01A.values, strata=surv.STRAT.values)
ref["logrank"] = {
    "two_groups": {"source": "lifelines logrank_test", "chisq": lr2.test_statistic, "p": lr2.p_value},
    "two_groups_statsmodels": {"source": "statsmodels survdiff", "chisq": float(sd_chi), "p": float(sd_p)},
    "three_groups": {"source": "lifelines multivariate_logrank_test ARM3", "chisq": lr3.test_statistic, "p": lr3.p_value, "df": 2},
    "stratified": {"source": "statsmodels survdiff strata=STRAT", "chisq": float(st_chi), "p": float(st_p)},
}

# ---------------------------------------------------------------------------------------
# Cox PH
# ---------------------------------------------------------------------------------------
covs = ["TRTN", "AGE", "X1", "SEXN"]


def cox_ref(time_col, ties, strata=None):
    d = surv[[time_col, "CNSR"] + covs + (["STRAT"] if strata else [])].copy()
    d["E"] = 1 - d.CNSR
    mod = PHReg(d[time_col].values, d[covs].values, status=d.E.values, ties=ties,
                strata=d.STRAT.values if strata else None)
    res = mod.fit(tol=1e-12, maxiter=200)
    p = len(covs)
    U0 = mod.score(np.zeros(p))
    H0 = mod.hessian(np.zeros(p))
    score = float(U0 @ np.linalg.solve(-H0, U0))
    ll0 = float(mod.loglike(np.zeros(p)))
    beta = res.params
    V = res.cov_params()
    wald = float(beta @ np.linalg.solve(V, beta))
    out = {
        "source": f"statsmodels PHReg ties={ties}" + (" strata=STRAT" if strata else ""),
        "time": time_col,
        "ties": ties,
        "strata": strata,
        "terms": covs,
        "estimate": list(map(float, beta)),
        "se": list(map(float, res.bse)),
        "p": list(map(float, res.pvalues)),
        "loglik": float(res.llf),
        "loglik_null": ll0,
        "lr": 2 * (float(res.llf) - ll0),
        "wald": wald,
        "score": score,
    }
    if ties == "efron":
        cph = CoxPHFitter(strata=["STRAT"] if strata else None)
        cd = d[[time_col, "E"] + covs + (["STRAT"] if strata else [])]
        cph.fit(cd, duration_col=time_col, event_col="E",
                fit_options={"precision": 1e-13, "r_precision": 1e-15, "max_steps": 200})
        s = cph.summary
        out["lifelines"] = {
            "estimate": list(map(float, s["coef"].values)),
            "se": list(map(float, s["se(coef)"].values)),
            "p": list(map(float, s["p"].values)),
            "hr_lo": list(map(float, s["exp(coef) lower 95%"].values)),
            "hr_hi": list(map(float, s["exp(coef) upper 95%"].values)),
            "loglik": float(cph.log_likelihood_),
            "lr": float(cph.log_likelihood_ratio_test().test_statistic),
        }
    return out


ref["cox"] = [
    cox_ref("AVAL", "efron"),
    cox_ref("AVAL", "breslow"),
    cox_ref("AVAL", "efron", strata=True),
    cox_ref("AVAL", "breslow", strata=True),
    cox_ref("AVALC", "efron"),
]

# ---------------------------------------------------------------------------------------
# ANCOVA (statsmodels OLS, type III with Sum coding), LS means via t_test
# ---------------------------------------------------------------------------------------
fit = smf.ols("CHG ~ C(TRT01P, Sum) + C(SITEID, Sum) + BASE", data=eff).fit()
a3 = anova_lm(fit, typ=3)
names = list(fit.params.index)
levels = sorted(eff.TRT01P.unique())
sites = sorted(eff.SITEID.unique())


def lsvec(level):
    v = np.zeros(len(names))
    v[0] = 1.0
    i = levels.index(level)
    for j in range(len(levels) - 1):
        v[1 + j] = 1.0 if i == j else (-1.0 if i == len(levels) - 1 else 0.0)
    v[-1] = eff.BASE.mean()
    return v


lsm = []
for lv in levels:
    tt = fit.t_test(lsvec(lv))
    ci = tt.conf_int(alpha=0.05)[0]
    lsm.append({"level": lv, "estimate": float(tt.effect[0]), "se": float(tt.sd[0, 0]), "lo": float(ci[0]), "hi": float(ci[1])})
pairs = []
for i in range(len(levels)):
    for j in range(i + 1, len(levels)):
        tt = fit.t_test(lsvec(levels[i]) - lsvec(levels[j]))
        ci = tt.conf_int(alpha=0.05)[0]
        pairs.append({"a": levels[i], "b": levels[j], "estimate": float(tt.effect[0]), "se": float(tt.sd[0, 0]),
                      "lo": float(ci[0]), "hi": float(ci[1]), "p": float(tt.pvalue)})
terms = []
for name, row in a3.iterrows():
    terms.append({"term": name, "ss": float(row["sum_sq"]), "df": float(row["df"]),
                  "f": nn(row["F"]), "p": nn(row["PR(>F)"])})
ref["ancova"] = {
    "source": "statsmodels ols CHG ~ C(TRT01P, Sum) + C(SITEID, Sum) + BASE; anova_lm typ=3; t_test for LS means",
    "type3": terms,
    "mse": float(fit.mse_resid),
    "df_resid": float(fit.df_resid),
    "r2": float(fit.rsquared),
    "lsmeans": lsm,
    "pairs": pairs,
    "params": list(map(float, fit.params.values)),
}

# ---------------------------------------------------------------------------------------
# Logistic (statsmodels Logit): RESP ~ TRT01P (treatment coding, first sorted level ref) + BASE
# ---------------------------------------------------------------------------------------
X = pd.DataFrame({"const": 1.0}, index=eff.index)
for lv in levels[1:]:
    X[f"TRT01P={lv}"] = (eff.TRT01P == lv).astype(float)
X["BASE"] = eff.BASE
lg = sm.Logit(eff.RESP, X).fit(method="newton", tol=1e-14, maxiter=100, disp=0)
ci = lg.conf_int(0.05)
ref["logistic"] = {
    "source": "statsmodels Logit newton",
    "terms": list(X.columns),
    "estimate": list(map(float, lg.params)),
    "se": list(map(float, lg.bse)),
    "p": list(map(float, lg.pvalues)),
    "or_lo": list(map(float, np.exp(ci[0]))),
    "or_hi": list(map(float, np.exp(ci[1]))),
    "loglik": float(lg.llf),
    "loglik_null": float(lg.llnull),
    "lr": float(lg.llr),
    "lr_p": float(lg.llr_pvalue),
}

# ---------------------------------------------------------------------------------------
# Frequencies: Fisher (scipy), chi-square (scipy), CMH (statsmodels)
# ---------------------------------------------------------------------------------------
tables = [[[12, 5], [3, 10]], [[1, 9], [11, 3]], [[0, 5], [5, 0]], [[20, 30], [25, 25]], [[2, 7], [8, 2]]]
fisher = []
for t in tables:
    entry = {"table": t}
    for alt in ["two-sided", "less", "greater"]:
        r = st.fisher_exact(t, alternative=alt)
        entry[alt] = float(r.pvalue)
    entry["odds_ratio"] = nn(st.fisher_exact(t).statistic)
    c0 = st.chi2_contingency(t, correction=False)
    entry["chisq"] = float(c0.statistic)
    entry["chisq_p"] = float(c0.pvalue)
    c1 = st.chi2_contingency(t, correction=True)
    entry["chisq_yates"] = float(c1.statistic)
    entry["chisq_yates_p"] = float(c1.pvalue)
    fisher.append(entry)
ref["fisher"] = {"source": "scipy.stats.fisher_exact / chi2_contingency", "tables": fisher}
rxc = [[10, 20, 30], [15, 15, 10], [5, 12, 8]]
c = st.chi2_contingency(rxc)
ref["chisq_rxc"] = {"table": rxc, "chisq": float(c.statistic), "df": int(c.dof), "p": float(c.pvalue)}

ct = pd.crosstab(freq.TRT, freq.RESP)
c = st.chi2_contingency(ct.values, correction=False)
ref["freq_2x2"] = {"row_levels": list(ct.index), "col_levels": list(ct.columns), "table": ct.values.tolist(),
                   "chisq": float(c.statistic), "chisq_p": float(c.pvalue),
                   "fisher_p": float(st.fisher_exact(ct.values).pvalue)}
strata_tables = []
for cen in sorted(freq.CENTER.unique()):
    d = freq[freq.CENTER == cen]
    t = pd.crosstab(pd.Categorical(d.TRT, categories=["Active", "Control"]),
                    pd.Categorical(d.RESP, categories=["N", "Y"]), dropna=False).values
    strata_tables.append(t.tolist())
stt = StratifiedTable([np.array(t, dtype=float) for t in strata_tables])
r0 = stt.test_null_odds(correction=False)
r1 = stt.test_null_odds(correction=True)
lo, hi = stt.oddsratio_pooled_confint(0.05)
bd = stt.test_equal_odds()
ref["cmh"] = {
    "source": "statsmodels StratifiedTable, TRT (Active, Control) x RESP (N, Y) by CENTER",
    "tables": strata_tables,
    "chisq": float(r0.statistic), "p": float(r0.pvalue),
    "chisq_corrected": float(r1.statistic), "p_corrected": float(r1.pvalue),
    "or_mh": float(stt.oddsratio_pooled), "logor_se": float(stt.logodds_pooled_se),
    "or_lo": float(lo), "or_hi": float(hi),
    "breslow_day": float(bd.statistic), "breslow_day_p": float(bd.pvalue),
}

# ---------------------------------------------------------------------------------------
# Descriptive summaries (pandas / numpy)
# ---------------------------------------------------------------------------------------
desc = []
for g in sorted(surv.TRT01A.unique()):
    v = surv.AGE[surv.TRT01A == g].values
    desc.append({"group": g, "n": int(len(v)), "mean": float(v.mean()), "sd": float(v.std(ddof=1)),
                 "median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
                 "q1_r7": float(np.quantile(v, 0.25, method="linear")),
                 "q3_r7": float(np.quantile(v, 0.75, method="linear")),
                 "q1_sas5": float(np.quantile(v, 0.25, method="averaged_inverted_cdf")),
                 "q3_sas5": float(np.quantile(v, 0.75, method="averaged_inverted_cdf"))})
counts = pd.crosstab(surv.SEX, surv.TRT01A)
ref["describe"] = {"source": "numpy (quantile methods linear = R type 7, averaged_inverted_cdf = SAS QNTLDEF=5)",
                   "var": "AGE", "by": "TRT01A", "groups": desc,
                   "sex_counts": {col: {row: int(counts.loc[row, col]) for row in counts.index} for col in counts.columns}}

with open(os.path.join(OUT, "reference.json"), "w") as f:
    json.dump(ref, f, indent=1)
print("wrote", OUT)
