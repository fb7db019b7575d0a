"""Benchmark: the cost of pseudonymization and encryption on the prepare stage (issue 12).

For each size it writes a digits-like CSV with personal columns (an email id, a name, a phone) and measures, in one
Python process, the prepare stage's library work (`ingest_stream` with the split, then `save_split`) three ways:

  plain       the same rows without the personal columns (integer ids), read by the default reader: no protection
  pseudonym   the personal file: email id pseudonymized (HMAC-SHA256), name and phone dropped, text cells scrubbed
  encrypted   the same, from the file encrypted with `mlwb encrypt` (AES-256-GCM, decrypted into memory)

Overheads are relative to `plain`. The whole prepare stage also pays ~3.5 s of papermill, kernel and DVC start-up
(bench/README.md), which the percentages below leave out: on the stage they are smaller still.
Run: `.venv/bin/python bench/security.py` (default sizes: default (1,797 rows), 100000 rows; 5 reps).
Results: bench/results/security.json."""
import argparse, json, os, platform, statistics, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

def make_csvs(d:Path, rows:int) -> tuple:
    "A plain CSV and the same rows with personal columns; digits rows repeated."
    import numpy as np, pandas as pd
    from sklearn.datasets import load_digits
    dg = load_digits(); idx = np.arange(rows) % len(dg.target)
    px = pd.DataFrame(dg.data[idx].astype(int), columns=[f'px_{i}' for i in range(64)])
    plain = px.copy(); plain.insert(0, 'label', dg.target[idx]); plain.insert(0, 'id', np.arange(rows))
    pers = plain.drop(columns='id')
    pers.insert(0, 'phone', [f'+39 333 {i % 1000:03d} {i % 10000:04d}' for i in range(rows)])
    pers.insert(0, 'name', [f'Person {i}' for i in range(rows)])
    pers.insert(0, 'email', [f'user{i}@example.org' for i in range(rows)])
    plain.to_csv(d/'plain.csv', index=False); pers.to_csv(d/'people.csv', index=False)
    return d/'plain.csv', d/'people.csv'

def prepare(source:str, root:Path, id_col:str, opener) -> float:
    "Seconds for the prepare stage's library work on `source`."
    from mlops_workbench.data import Schema, ingest_stream, save_split
    t = time.perf_counter()
    r = ingest_stream(source, Schema(id_col=id_col, min_value=0, max_value=16), root, quarantine=root/'q',
                      split=dict(test_size=0.2, val_size=0.1, seed=42), opener=opener)
    save_split(r.clean, r.positions, {}, root/'prepared')
    return time.perf_counter() - t

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--sizes', default='1797,100000'); ap.add_argument('--reps', type=int, default=5)
    a = ap.parse_args()
    from mlops_workbench.secure import secure_reader, new_key, encrypt_file, parse_key
    key = new_key(); env = {'MLWB_KEY': key}
    personal = {'email': 'pseudonymize', 'name': 'drop', 'phone': 'drop'}
    out = dict(machine=platform.node(), cpus=os.cpu_count(), load=os.getloadavg()[0], reps=a.reps, sizes={})
    for rows in map(int, a.sizes.split(',')):
        with tempfile.TemporaryDirectory() as d:
            d = Path(d); plain, people = make_csvs(d, rows)
            encrypt_file(people, key=parse_key(key))
            rd = lambda src: secure_reader(personal, src, 'email', 'label', [], env=env)
            runs = {'plain': lambda: prepare('plain.csv', d, 'id', None),
                    'pseudonym': lambda: prepare('people.csv', d, 'email', rd('people.csv')),
                    'encrypted': lambda: prepare('people.csv.enc', d, 'email', rd('people.csv.enc'))}
            for f in runs.values(): f()   # warm up (imports, page cache)
            times = {k: [] for k in runs}
            for _ in range(a.reps):
                for k, f in runs.items(): times[k].append(f())   # interleaved: the shared machine's load hits all alike
            med = {k: statistics.median(v) for k, v in times.items()}
            best = {k: min(v) for k, v in times.items()}   # the least disturbed run: the steadier figure on a shared machine
            res = dict(rows=rows, csv_mb=round(people.stat().st_size / 1e6, 2),
                       median_s={k: round(v, 4) for k, v in med.items()}, min_s={k: round(v, 4) for k, v in best.items()},
                       overhead_pct_median={k: round(100 * (med[k] / med['plain'] - 1), 1) for k in ('pseudonym', 'encrypted')},
                       overhead_pct_min={k: round(100 * (best[k] / best['plain'] - 1), 1) for k in ('pseudonym', 'encrypted')})
            out['sizes'][str(rows)] = res
            print(json.dumps(res), flush=True)
    (HERE/'results').mkdir(exist_ok=True)
    (HERE/'results'/'security.json').write_text(json.dumps(out, indent=1) + '\n')

if __name__ == '__main__': main()
