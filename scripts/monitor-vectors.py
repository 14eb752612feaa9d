#!/usr/bin/python3
"""Test vectors for the drift statistics in src/monitor/stats, computed with SciPy/NumPy.

Regenerate (Debian's python3-scipy 1.10.1 / numpy 1.24.2, i.e. /usr/bin/python3, not a venv):

    /usr/bin/python3 scripts/monitor-vectors.py > test/monitor/vectors.json

The output is deterministic (seeded generators; inputs are stored in the file, rounded to 6 decimals where
generated, and SciPy runs on the rounded values). Fixture cases store only SciPy's results: the tests read the
CSV files themselves. Infinite values are written as the string "inf" (JSON has no infinity).
"""
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import scipy
from scipy import stats
from scipy.spatial.distance import jensenshannon
from scipy.stats import kstwo

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures"


def num(x):
    x = float(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if math.isnan(x):
        return "nan"
    return x


def arr(a):
    return [num(v) for v in a]


def ks_case(name, a, b, method="auto", with_asymp=False):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    r = stats.ks_2samp(a, b, alternative="two-sided", method=method)
    n1, n2 = len(a), len(b)
    used = method
    if method == "auto":
        used = "exact" if max(n1, n2) <= 10000 else "asymp"
    case = {"name": name, "a": arr(a), "b": arr(b), "method": method, "expectedMethod": used,
            "statistic": num(r.statistic), "pvalue": num(r.pvalue)}
    if with_asymp:
        s = stats.ks_2samp(a, b, alternative="two-sided", method="asymp")
        case["asymp"] = {"statistic": num(s.statistic), "pvalue": num(s.pvalue)}
    return case


def ks_cases():
    rng = np.random.default_rng(20240601)
    cases = []
    a = [0.61, 0.29, 0.06, 0.59, -1.73, -0.74, 0.51, -0.56, 0.39, 1.64, 0.05, -0.06, 0.64, -0.82, 0.37, 1.77,
         1.09, -1.28, 2.36, 1.31, 1.05, -0.52, -0.74, 0.12, 0.79]
    b = [1.88, 0.68, 1.49, 1.97, 0.65, 2.37, 0.98, 0.64, 1.50, 2.10, 0.43, 1.24, 1.19, 2.71, 0.74, 1.30, 1.31,
         1.66, 0.49, 1.80]
    cases.append(ks_case("doc 5.8 small exact", a, b))
    cases.append(ks_case("doc 5.8 small asymp", a, b, "asymp"))
    sizes = [(5, 5), (5, 7), (6, 9), (8, 12), (10, 10), (12, 5), (20, 25), (30, 30), (50, 40), (64, 48),
             (100, 80), (143, 426), (111, 331), (200, 200), (300, 199), (500, 700), (1000, 999), (1347, 450),
             (2000, 3000), (4000, 4000)]
    for n1, n2 in sizes:
        for shift in ((0.0, 0.3, 1.0) if n1 + n2 <= 1500 else (0.08,)):
            x = np.round(rng.normal(0, 1, n1), 6)
            y = np.round(rng.normal(shift, 1, n2), 6)
            cases.append(ks_case(f"normal n1={n1} n2={n2} shift={shift}", x, y, with_asymp=True))
        # ties: one decimal
        x = np.round(rng.normal(0, 1, n1), 1)
        y = np.round(rng.normal(0.2, 1, n2), 1)
        cases.append(ks_case(f"ties (1 decimal) n1={n1} n2={n2}", x, y, with_asymp=True))
        # integers with many ties
        x = rng.integers(0, 8, n1).astype(float)
        y = rng.integers(0, 9, n2).astype(float)
        cases.append(ks_case(f"integers n1={n1} n2={n2}", x, y, with_asymp=True))
    # identical samples, fully overlapping
    x = np.round(rng.normal(0, 1, 40), 6)
    cases.append(ks_case("identical samples", x, x.copy()))
    cases.append(ks_case("constant equal", np.ones(7), np.ones(9)))
    cases.append(ks_case("disjoint", np.arange(10.0), np.arange(10.0) + 100))
    cases.append(ks_case("disjoint equal n", np.arange(60.0), np.arange(60.0) + 100))
    # the exact/asymp boundary and the large asymptotic path
    x = np.round(rng.normal(0, 1, 10000), 6)
    y = np.round(rng.normal(0.03, 1, 9000), 6)
    cases.append(ks_case("boundary n1=10000 n2=9000 exact", x, y))
    x = np.round(rng.normal(0, 1, 12000), 6)
    y = np.round(rng.normal(0.02, 1, 11000), 6)
    cases.append(ks_case("large n1=12000 n2=11000 asymp", x, y))
    return cases


def kstwo_cases():
    out = []
    ns = [1, 2, 3, 5, 10, 11, 20, 50, 100, 139, 140, 141, 200, 500, 1000, 5000, 5714, 20000, 100000, 150000]
    for n in ns:
        for x in [0.001, 0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3, 0.45, 0.5, 0.6, 0.75, 0.9, 0.99,
                  0.5 / n, 0.75 / n, 1.0 / n, 1.5 / n, 3.0 / n, (n - 1.0) / n if n > 1 else 0.5,
                  math.sqrt(0.5 / n), math.sqrt(2.0 / n), math.sqrt(3.0 / n), math.sqrt(10.0 / n)]:
            if 0 < x < 1:
                out.append({"d": x, "n": n, "sf": num(kstwo.sf(x, n))})
    return out


def divergence_cases():
    p = [0.2, 0.5, 0.3]
    q = [0.1, 0.6, 0.3]
    rng = np.random.default_rng(7)
    pairs = [(p, q), ([2, 5, 3], [1, 6, 3]), (p, [0.5, 0.5, 0.0]), ([1, 0, 0], [0, 1, 0]), ([1.0, 0.0], [0.5, 0.5]),
             ([0.0, 0.3, 0.7], [0.2, 0.3, 0.5])]
    for k in (4, 10, 30, 200):
        pairs.append((list(rng.integers(0, 50, k).astype(float)), list(rng.integers(1, 50, k).astype(float))))
        pairs.append((list(np.round(rng.dirichlet(np.ones(k)), 9)), list(np.round(rng.dirichlet(np.ones(k)), 9))))
    out = []
    for a, b in pairs:
        a = np.asarray(a, dtype=float)
        b = np.asarray(b, dtype=float)
        pa = a / a.sum()
        pb = b / b.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            psi_value = np.sum((pa - pb) * np.log(pa / pb))
        out.append({
            "p": arr(a), "q": arr(b),
            "kl": num(stats.entropy(a, b)), "kl2": num(stats.entropy(a, b, base=2)),
            "klReverse": num(stats.entropy(b, a)),
            "js": num(jensenshannon(a, b)), "js2": num(jensenshannon(a, b, base=2.0)),
            "psiShares": arr(pa), "psiSharesQ": arr(pb), "psi": num(psi_value),
            "l1": num(np.sum(np.abs(pa - pb))), "tvd": num(0.5 * np.sum(np.abs(pa - pb))),
        })
    return out


def wasserstein_cases():
    rng = np.random.default_rng(11)
    out = []
    fixed = [
        ([0, 1, 3], [5, 6, 8], None, None),
        ([0, 1], [0, 1], [3, 1], [2, 2]),
        ([3.4, 3.9, 7.5, 7.8], [4.5, 1.4], [1.4, 0.9, 3.1, 7.2], [3.2, 3.5]),
        ([1, 2, 3, 4, 5], [2, 3, 4, 5, 6], None, None),
    ]
    for n1, n2 in [(5, 8), (50, 70), (300, 200), (2000, 1500)]:
        x = list(np.round(rng.normal(0, 1, n1), 6))
        y = list(np.round(rng.normal(0.4, 1.5, n2), 6))
        fixed.append((x, y, None, None))
        fixed.append((x, y, list(np.round(rng.uniform(0, 3, n1), 6)), list(np.round(rng.uniform(0, 3, n2), 6))))
        fixed.append((list(rng.integers(0, 5, n1).astype(float)), list(rng.integers(0, 6, n2).astype(float)), None, None))
    for u, v, uw, vw in fixed:
        u = np.asarray(u, dtype=float)
        v = np.asarray(v, dtype=float)
        w = stats.wasserstein_distance(u, v, uw, vw)
        case = {"u": arr(u), "v": arr(v), "w1": num(w)}
        if uw is not None:
            case["uWeights"] = arr(uw)
            case["vWeights"] = arr(vw)
        else:
            case["normed"] = num(w / max(np.std(u), 0.001))
        out.append(case)
    return out


def chisquare_cases():
    out = {"goodnessOfFit": [], "contingency": [], "z": []}
    rng = np.random.default_rng(3)
    gof = [([50, 30, 20], [30, 40, 30]), ([10, 10, 10, 10], [12, 8, 11, 9]), ([5, 0, 7], [3, 2, 9]),
           ([100, 200, 300, 400, 500], [120, 190, 310, 350, 560])]
    for _ in range(4):
        k = int(rng.integers(3, 12))
        gof.append((list(rng.integers(1, 80, k)), list(rng.integers(0, 80, k))))
    for ref, cur in gof:
        ref = np.asarray(ref, dtype=float)
        cur = np.asarray(cur, dtype=float)
        k_norm = cur.sum() / ref.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            r = stats.chisquare(cur, ref * k_norm)
        out["goodnessOfFit"].append({"reference": arr(ref), "current": arr(cur), "statistic": num(r.statistic),
                                     "pvalue": num(r.pvalue)})
    tables = [[[50, 30, 20], [30, 40, 30]], [[50, 50], [30, 70]], [[10, 3], [2, 15]], [[5, 5], [5, 5]],
              [[12, 7, 9], [3, 14, 6], [8, 8, 10]], [[1, 2, 3, 4]], [[100, 1], [99, 2]]]
    for _ in range(3):
        tables.append(rng.integers(1, 60, (2, int(rng.integers(2, 8)))).tolist())
    for table in tables:
        for correction in (True, False):
            r = stats.chi2_contingency(np.asarray(table, dtype=float), correction=correction)
            out["contingency"].append({"table": table, "correction": correction, "statistic": num(r[0]),
                                       "pvalue": num(r[1]), "dof": int(r[2])})

    def evidently_z(ref, cur):
        keys = sorted(set(ref) | set(cur))
        if len(set(ref)) == 1 and len(set(cur)) == 1 and ref[0] == cur[0]:
            return 0.0, 1.0
        r = np.array([0 if x == keys[0] else 1 for x in ref], dtype=float)
        c = np.array([0 if x == keys[0] else 1 for x in cur], dtype=float)
        n1, n2 = len(r), len(c)
        p1, p2 = float(sum(r)) / n1, float(sum(c)) / n2
        P = float(p1 * n1 + p2 * n2) / (n1 + n2)
        z = (p1 - p2) / np.sqrt(P * (1 - P) * (1.0 / n1 + 1.0 / n2))
        return z, 2 * (1 - stats.norm.cdf(np.abs(z)))

    zs = [([0] * 60 + [1] * 40, [0] * 40 + [1] * 60), (["a"] * 30 + ["b"] * 70, ["a"] * 33 + ["b"] * 67),
          ([1.0] * 10 + [2.0] * 12, [1.0] * 3 + [2.0] * 20), ([5] * 8, [5] * 9), ([0] * 8, [1] * 3 + [0] * 5)]
    for ref, cur in zs:
        z, p = evidently_z(ref, cur)
        out["z"].append({"reference": ref, "current": cur, "statistic": num(z), "pvalue": num(p)})
    return out


def binning_cases():
    rng = np.random.default_rng(5)
    arrays = {
        "normal 100": np.round(rng.normal(0, 1, 100), 6),
        "normal 1000": np.round(rng.normal(3, 2, 1000), 6),
        "exponential 500 (skewed)": np.round(rng.exponential(1.0, 500), 6),
        "lognormal 250": np.round(rng.lognormal(0, 1, 250), 6),
        "integers 300": rng.integers(0, 20, 300).astype(float),
        "constant": np.full(12, 4.25),
        "single": np.array([7.0]),
        "two": np.array([1.0, 3.0]),
        "three": np.array([1.0, 2.0, 10.0]),
        "uniform 4097": np.round(rng.uniform(-5, 5, 4097), 6),
    }
    out = []
    probe = np.round(rng.normal(0.5, 1.5, 300), 6)
    for name, a in arrays.items():
        for rule in ("sturges", "doane"):
            edges = np.histogram_bin_edges(a, bins=rule)
            counts = np.histogram(a, bins=edges)[0]
            probe_counts = np.histogram(probe, bins=edges)[0]
            out.append({"name": name, "rule": rule, "values": arr(a), "edges": arr(edges),
                        "counts": [int(c) for c in counts], "probeCounts": [int(c) for c in probe_counts]})
    return {"cases": out, "probe": arr(probe)}


def evidently_binned(reference, current, numeric, feel_zeroes):
    """Evidently's get_binned_data (legacy/calculations/stattests/utils.py) on numpy arrays."""
    if numeric and len(np.unique(reference)) > 20:
        bins = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
        ref = np.histogram(reference, bins)[0] / len(reference)
        cur = np.histogram(current, bins)[0] / len(current)
    else:
        keys = sorted(set(reference.tolist()) | set(current.tolist()))
        ref = np.array([np.sum(reference == k) for k in keys]) / len(reference)
        cur = np.array([np.sum(current == k) for k in keys]) / len(current)
    if feel_zeroes:
        for percents in (ref, cur):
            m = min(percents[percents != 0])
            np.place(percents, percents == 0, m / 10 ** 6 if m <= 0.0001 else 0.0001)
    return ref, cur


def end_to_end():
    ref = ((np.arange(1, 201) * 37) % 101) / 10
    cur = ((np.arange(1, 151) * 53) % 97) / 10 + 1
    cases = [("doc 5.8", ref, cur)]
    rng = np.random.default_rng(9)
    cases.append(("normal shift", np.round(rng.normal(0, 1, 400), 6), np.round(rng.normal(0.4, 1.2, 300), 6)))
    cases.append(("few values (per-value bins)", rng.integers(0, 12, 300).astype(float),
                  rng.integers(2, 14, 250).astype(float)))
    out = []
    for name, r, c in cases:
        p_fill, q_fill = evidently_binned(r, c, True, True)
        p_js, q_js = evidently_binned(r, c, True, False)
        psi_value = np.sum((p_fill - q_fill) * np.log(p_fill / q_fill))
        ks = stats.ks_2samp(r, c)
        # NannyML continuous JS: Doane on the reference, leftover bin
        edges = np.histogram_bin_edges(r.astype("float64"), bins="doane")
        rp = np.histogram(r, bins=edges)[0] / len(r)
        cp = np.histogram(c, bins=edges)[0] / len(c)
        leftover = 1 - np.sum(cp)
        if leftover > 0:
            cp = np.append(cp, leftover)
            rp = np.append(rp, 0)
        out.append({
            "name": name, "reference": arr(r), "current": arr(c),
            "evidently": {"bins": len(p_js), "sharesFilledReference": arr(p_fill), "sharesFilledCurrent": arr(q_fill),
                          "psi": num(psi_value), "kl": num(stats.entropy(p_fill, q_fill)),
                          "js": num(jensenshannon(p_js, q_js)),
                          "normedWasserstein": num(stats.wasserstein_distance(r, c) / max(np.std(r), 0.001)),
                          "ksStatistic": num(ks.statistic), "ksPvalue": num(ks.pvalue)},
            "nannyml": {"bins": len(rp), "leftover": num(leftover if leftover > 0 else 0),
                        "js": num(jensenshannon(rp, cp, base=2)),
                        "wasserstein": num(stats.wasserstein_distance(r, c))},
        })
    return out


def read_csv(path):
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    return header, {name: np.array([float(row[i]) for row in rows[1:]]) for i, name in enumerate(header)}


def fixture_cases():
    out = {}
    for fixture in ("breast_cancer_mlp", "diabetes_linear"):
        meta = json.loads((FIXTURES / fixture / "meta.json").read_text())
        _, train = read_csv(FIXTURES / fixture / "train.csv")
        entry = {}
        for other in ("prod", "drifted"):
            _, data = read_csv(FIXTURES / fixture / f"{other}.csv")
            entry[other] = {}
            for feature in meta["features"]:
                r = stats.ks_2samp(train[feature], data[feature])
                entry[other][feature] = {"statistic": num(r.statistic), "pvalue": num(r.pvalue)}
        out[fixture] = entry
    return out


def main():
    vectors = {
        "generator": "scripts/monitor-vectors.py",
        "versions": {"scipy": scipy.__version__, "numpy": np.__version__},
        "ks": ks_cases(),
        "kstwo": kstwo_cases(),
        "divergence": divergence_cases(),
        "wasserstein": wasserstein_cases(),
        "chisquare": chisquare_cases(),
        "binning": binning_cases(),
        "endToEnd": end_to_end(),
        "fixtures": fixture_cases(),
    }
    json.dump(vectors, sys.stdout, separators=(",", ":"), allow_nan=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
