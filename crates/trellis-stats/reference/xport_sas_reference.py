#!/usr/bin/env python3
"""Expected values for the SAS-written XPORT v5 files in reference/fixtures/sas_written/.

Those files were written by SAS itself (see fixtures/sas_written/README.md for where each
comes from); this script does not make them, it only describes them. Run from the crate
directory with a venv holding pandas and pyreadstat:

    python reference/xport_sas_reference.py

Writes reference/fixtures/sas_written/expected.json, so CI needs no Python.

Three readers that share no code with trellis are used, and must agree:

* pyreadstat (ReadStat): variable names, labels, types, storage lengths, format strings,
  the dataset name and label, row count, every character value and every numeric value.
* A small decoder written here from the SAS technical note TS-140 (record layout of a
  transport file): header strings (SAS version, OS, timestamps, dataset type), the NAMESTR
  fields pyreadstat does not hand out split up (format name/width/decimals, informat,
  justification), which missing-value code (. _ .A-.Z) a numeric missing value carries,
  and an exact decode of every number with fractions.Fraction, correctly rounded to f64.
  Every number must equal pyreadstat's bit for bit, and every missing value must be
  missing in both.
* pandas.read_sas(format="xport"): every value again. pandas 3.1.1 reads an IBM zero as
  16**-65 (5.4e-79); that one difference is allowed, everything else must match.

Numbers are written to JSON as Python repr() strings (shortest round-trip text, so the
Rust side parses them back to the same f64 bits); a missing number is written as its SAS
code: ".", "._" or ".A" to ".Z". Character values lose trailing blanks, as in SAS.
"""
import hashlib
import json
import os
import struct
import sys
from fractions import Fraction

import numpy as np
import pandas as pd
import pyreadstat

HERE = os.path.dirname(os.path.abspath(__file__))
DIR = os.path.join(HERE, "fixtures", "sas_written")

# file -> (sha256, where it comes from); the README in DIR says more.
FILES = {
    "SSHSV1_A.xpt": (
        "93c162e6cc0df62ef5791bf6581fcf0b4c635eee0a18d112c2b5b5f95a6e17c6",
        "PyPI pandas 0.20.3, pandas/tests/io/sas/data/SSHSV1_A.xpt (NHANES, CDC)",
    ),
    "paxraw_d_short.xpt": (
        "35d00962342ee5ca6040d0cb3d5f0b2928983fa4f53011e15fac554f3110437e",
        "PyPI pandas 0.20.3, pandas/tests/io/sas/data/paxraw_d_short.xpt (NHANES, CDC)",
    ),
    "Alfalfa.xpt": (
        "be45dad87c2f86da5c0ff0eef3251de40d4c43d896a1965fcacfbbcc92612f0d",
        "npm xport-js 0.3.1 (same file in 0.1.4), package/test/Alfalfa.xpt",
    ),
    "adtte.xpt": (
        "abb204458e556fba5cb8637ba11181f574d07a0b726decc85b5d08ee13b9df5d",
        "npm xport-js 0.3.1, package/test/adtte.xpt (CDISC pilot CDISCPILOT01 ADTTE)",
    ),
    "econ.xpt": (
        "d9bcd999a2100dbfb4c20b240b7b653f058cffd0fc056aecffc12995553a021e",
        "PyPI xport 1.1.1 sdist, xport-1.1.1/test/data/test.xpt",
    ),
}

MISSING = {ord("."): ".", ord("_"): "._", **{c: "." + chr(c) for c in range(ord("A"), ord("Z") + 1)}}


def text(b):
    return b.rstrip(b" \x00").decode("latin-1")


def ibm_exact(b):
    """IBM System/370 float (1-8 bytes, big endian) to the nearest f64, exactly."""
    w = int.from_bytes(b.ljust(8, b"\x00"), "big")
    sign = -1 if w >> 63 else 1
    e16 = (w >> 56) & 0x7F
    frac = w & ((1 << 56) - 1)
    if frac == 0:
        return 0.0 * sign
    v = Fraction(frac, 1 << 56) * Fraction(16) ** (e16 - 64)
    return float(sign * v)  # Fraction -> float is correctly rounded


def parse_ts140(path):
    """Headers, NAMESTRs and raw values of a one-member XPORT v5 file, per TS-140."""
    d = open(path, "rb").read()
    rec = [d[i:i + 80] for i in range(0, len(d), 80)]
    assert rec[0].startswith(b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!")
    lib = {
        "sas_version": text(rec[1][24:32]),
        "os": text(rec[1][32:40]),
        "created": text(rec[1][64:80]),
        "modified": text(rec[2][0:16]),
    }
    assert rec[3].startswith(b"HEADER RECORD*******MEMBER  HEADER RECORD!!!!!!!")
    nlen = int(rec[3][74:78])
    assert nlen == 140
    assert rec[4].startswith(b"HEADER RECORD*******DSCRPTR HEADER RECORD!!!!!!!")
    m1, m2 = rec[5], rec[6]
    member = {
        "name": text(m1[8:16]),
        "sas_version": text(m1[24:32]),
        "os": text(m1[32:40]),
        "created": text(m1[64:80]),
        "modified": text(m2[0:16]),
        "label": text(m2[32:72]),
        "type": text(m2[72:80]),
    }
    assert rec[7].startswith(b"HEADER RECORD*******NAMESTR HEADER RECORD!!!!!!!")
    nvar = int(rec[7][54:58])
    start = 8 * 80
    variables = []
    for k in range(nvar):
        ns = d[start + k * nlen:start + (k + 1) * nlen]
        ntype, _hfun, length, varnum = struct.unpack(">hhhh", ns[0:8])
        fw, fd, fj = struct.unpack(">hhh", ns[64:70])
        ifw, ifd = struct.unpack(">hh", ns[80:84])
        (pos,) = struct.unpack(">i", ns[84:88])
        variables.append({
            "varnum": varnum,
            "name": text(ns[8:16]),
            "type": {1: "numeric", 2: "char"}[ntype],
            "length": length,
            "label": text(ns[16:56]),
            "format": {"name": text(ns[56:64]), "width": fw, "decimals": fd},
            "format_justify": fj,
            "informat": {"name": text(ns[72:80]), "width": ifw, "decimals": ifd},
            "position": pos,
        })
    obs_at = start + ((nvar * nlen + 79) // 80) * 80
    assert d[obs_at:obs_at + 80].startswith(b"HEADER RECORD*******OBS     HEADER RECORD!!!!!!!")
    data = d[obs_at + 80:]
    obs_len = sum(v["length"] for v in variables)
    n = len(data) // obs_len
    # trailing all-blank observations inside the last 80-byte record are padding
    while n > 0 and data[(n - 1) * obs_len:n * obs_len] == b" " * obs_len and len(data) - (n - 1) * obs_len < 80:
        n -= 1
    assert data[n * obs_len:].strip(b" ") == b"", "junk after the last observation"
    rows = [data[i * obs_len:(i + 1) * obs_len] for i in range(n)]
    cols = []
    for v in variables:
        raw = [r[v["position"]:v["position"] + v["length"]] for r in rows]
        if v["type"] == "numeric":
            vals = []
            for b in raw:
                if b[0] in MISSING and not any(b[1:]):
                    vals.append(MISSING[b[0]])
                else:
                    vals.append(ibm_exact(b))
            cols.append(vals)
        else:
            cols.append([text(b) for b in raw])
    return lib, member, variables, cols


def format_string(f):
    """Format as pyreadstat prints it: NAME, width and decimals, then a dot."""
    if not f["name"] and not f["width"] and not f["decimals"]:
        return None
    s = f["name"] + (str(f["width"]) if f["width"] else "") + "."
    return s + (str(f["decimals"]) if f["decimals"] else "")


def same_number(a, b):
    return (np.isnan(a) and np.isnan(b)) or np.float64(a).tobytes() == np.float64(b).tobytes()


def describe(fname):
    path = os.path.join(DIR, fname)
    sha, source = FILES[fname]
    got = hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert got == sha, f"{fname}: sha256 {got}, expected {sha}"
    lib, member, variables, raw_cols = parse_ts140(path)

    df, meta = pyreadstat.read_xport(path, disable_datetime_conversion=True)
    pdf = pd.read_sas(path, format="xport", encoding="latin-1")
    assert meta.table_name == member["name"], (meta.table_name, member["name"])
    assert (meta.file_label or "") == member["label"]
    assert meta.number_rows == len(df) == len(pdf) == len(raw_cols[0])
    assert list(df.columns) == [v["name"] for v in variables] == list(pdf.columns)

    out_cols = []
    pandas_zero_quirk = 0
    for v, raw in zip(variables, raw_cols):
        name = v["name"]
        assert (meta.column_names_to_labels[name] or "") == v["label"], name
        assert meta.variable_storage_width[name] == v["length"], name
        assert {"double": "numeric", "string": "char"}[meta.readstat_variable_types[name]] == v["type"], name
        assert meta.original_variable_types[name] == format_string(v["format"]), (
            name, meta.original_variable_types[name], v["format"])
        prs = df[name].tolist()
        pds = pdf[name].tolist()
        if v["type"] == "numeric":
            values = []
            for r, a, b in zip(raw, prs, pds):
                if isinstance(r, str):  # missing code
                    assert np.isnan(a) and np.isnan(b), (name, r, a, b)
                    values.append(r)
                    continue
                assert same_number(r, a), (name, r, a)
                if not same_number(r, b):
                    assert r == 0.0 and b == 16.0 ** -65, (name, r, b)
                    pandas_zero_quirk += 1
                values.append(repr(float(r)))
        else:
            for r, a, b in zip(raw, prs, pds):
                assert r == a.rstrip(" ") == b.rstrip(" "), (name, r, a, b)
            values = raw
        col = {k: v[k] for k in ("name", "label", "type", "length", "format", "format_justify", "informat")}
        col["format_string"] = format_string(v["format"])
        col["values"] = values
        out_cols.append(col)

    return {
        "file": fname,
        "sha256": sha,
        "source": source,
        "library": lib,
        "member": member,
        "rows": len(df),
        "columns": out_cols,
        "pandas_zero_quirk_values": pandas_zero_quirk,
    }


def dump(ref):
    """indent=1 JSON with each column's values on one line."""
    placeholders = {}
    for f in ref["files"]:
        for c in f["columns"]:
            key = f"@@VALUES{len(placeholders)}@@"
            placeholders[key] = json.dumps(c["values"], ensure_ascii=False)
            c["values"] = key
    s = json.dumps(ref, indent=1, ensure_ascii=False)
    for k, v in placeholders.items():
        s = s.replace(f'"{k}"', v)
    return s + "\n"


def main():
    ref = {
        "versions": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "pyreadstat": pyreadstat.__version__,
        },
        "source": "pyreadstat.read_xport values and metadata, checked against a TS-140 decoder "
                  "(exact IBM->IEEE with fractions) and pandas.read_sas; see the module docstring",
        "files": [describe(f) for f in FILES],
    }
    with open(os.path.join(DIR, "expected.json"), "w", encoding="utf-8") as fh:
        fh.write(dump(ref))
    for f in ref["files"]:
        print(f'{f["file"]}: {f["rows"]} rows, {len(f["columns"])} columns, SAS {f["library"]["sas_version"]} '
              f'{f["library"]["os"]}; pandas zero quirk on {f["pandas_zero_quirk_values"]} values')


if __name__ == "__main__":
    main()
