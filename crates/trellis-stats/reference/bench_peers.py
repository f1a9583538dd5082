#!/usr/bin/env python3
"""Python peers for benches/stats.rs: times lifelines / statsmodels / pandas / pyreadstat on the
CSV and XPORT files the Rust benchmark wrote, and prints JSON {task: seconds}. Data loading is
not timed; each fit is timed once (as in shared/research/pv-and-stats.md B.3).

usage: bench_peers.py DATA.csv DATA.xpt [fast|slow]
"""
import json
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")
csv, xpt = sys.argv[1], sys.argv[2]
slow = len(sys.argv) > 3 and sys.argv[3] == "slow"
df = pd.read_csv(csv)
out = {}


def timed(name, f):
    t0 = time.perf_counter()
    r = f()
    out[name] = time.perf_counter() - t0
    return r


from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import logrank_test
from statsmodels.duration.hazard_regression import PHReg
from statsmodels.duration.survfunc import SurvfuncRight, survdiff
import statsmodels.formula.api as smf
import statsmodels.api as sm
from statsmodels.stats.anova import anova_lm
import pyreadstat

X = ["X1", "X2", "X3", "X4", "X5"]
r = timed("lifelines_cox_efron_tied", lambda: CoxPHFitter().fit(df[["T_DAY", "E"] + X], "T_DAY", "E"))
out["check_lifelines_tied_beta1"] = float(r.params_.iloc[0])
timed("statsmodels_cox_efron_tied", lambda: PHReg(df.T_DAY.values, df[X].values, status=df.E.values, ties="efron").fit())
timed("statsmodels_cox_breslow_tied", lambda: PHReg(df.T_DAY.values, df[X].values, status=df.E.values, ties="breslow").fit())
timed("statsmodels_cox_efron_tied_4strata",
      lambda: PHReg(df.T_DAY.values, df[X].values, status=df.E.values, ties="efron", strata=df.STRAT.values).fit())
r = timed("lifelines_cox_efron_continuous", lambda: CoxPHFitter().fit(df[["T_CONT", "E"] + X], "T_CONT", "E"))
out["check_lifelines_continuous_beta1"] = float(r.params_.iloc[0])
if slow:
    timed("statsmodels_cox_efron_continuous",
          lambda: PHReg(df.T_CONT.values, df[X].values, status=df.E.values, ties="efron").fit())
timed("lifelines_km_tied", lambda: KaplanMeierFitter().fit(df.T_DAY, df.E))
timed("lifelines_km_continuous", lambda: KaplanMeierFitter().fit(df.T_CONT, df.E))
timed("statsmodels_km_tied", lambda: SurvfuncRight(df.T_DAY.values, df.E.values))
timed("statsmodels_km_continuous", lambda: SurvfuncRight(df.T_CONT.values, df.E.values))
g = df.X1.values == 1
r = timed("lifelines_logrank_2groups",
          lambda: logrank_test(df.T_DAY[g], df.T_DAY[~g], df.E[g], df.E[~g]))
out["check_lifelines_logrank_chisq"] = float(r.test_statistic)
timed("statsmodels_logrank_2groups", lambda: survdiff(df.T_DAY.values, df.E.values, df.X1.values))
r = timed("statsmodels_logrank_stratified",
          lambda: survdiff(df.T_DAY.values, df.E.values, df.X1.values, strata=df.STRAT.values))
out["check_statsmodels_stratified_chisq"] = float(r[0])


def ancova():
    fit = smf.ols("Y ~ C(TRT, Sum) + C(SITE, Sum) + BASE", data=df).fit()
    return anova_lm(fit, typ=3)


r = timed("statsmodels_ancova_type3", ancova)
out["check_statsmodels_ancova_F_trt"] = float(r["F"].iloc[1])
Xl = sm.add_constant(df[X].values)
r = timed("statsmodels_logit_newton", lambda: sm.Logit(df.RESP.values, Xl).fit(disp=0))
out["check_statsmodels_logit_beta1"] = float(r.params[1])
timed("pandas_read_sas_xport", lambda: pd.read_sas(xpt, format="xport"))
rx = timed("pyreadstat_read_xport", lambda: pyreadstat.read_xport(xpt))
with tempfile.TemporaryDirectory() as d:
    timed("pyreadstat_write_xport", lambda: pyreadstat.write_xport(rx[0], os.path.join(d, "w.xpt"), file_format_version=5))
print(json.dumps(out))
