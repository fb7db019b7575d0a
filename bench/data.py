"""Benchmark: the prepare stage's read of a large CSV (issue 8, item 6).

For each size it writes a digits-like CSV into a temporary folder (the 1,797 digits rows repeated with fresh ids, as
integer pixel text, with one bad cell every 10,000 rows so that validation and the quarantine have work), then runs the
prepare stage's library calls in a fresh Python process and measures the wall time, MB/s of CSV and the peak RSS of
that process tree (sampled every 20 ms, and the process's own ru_maxrss), and the CPU time of the work (MB per
CPU-second is what a quiet core would give; on the shared 2-core machine wall-clock MB/s depends on the load,
recorded per run):

  new       ingest_stream (chunks of prepare.chunk_rows, rejects streamed to the quarantine, split_positions run
            inside it, as the prepare stage calls it) -> save_split
  baseline  the landed in-memory path (mlops_workbench/data.py at BASELINE_COMMIT): read_table -> validate_rows ->
            split_dataset -> save_prepared -> write_quarantine
  ref       (with --ref COMMIT) the same calls as `new`, with mlops_workbench/data.py as it was at COMMIT: the
            before/after pair of a change, run alternately with `new` on the same file

and checks that both give the same fingerprint and quarantine. The CSV is deleted after each size.
"prepared output" is the prepared splits' size in memory (what `load_prepared` gives back; float32 pixels) and on disk.
Run: `.venv/bin/python bench/data.py` (default: sizes default,100,1000 MB, 3 reps, baseline up to 100 MB).
Results: bench/results/data.json."""
import argparse, json, os, platform, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BASELINE_COMMIT = 'b44cbef'   # the data module before streaming (issue 8, item 6)

def make_csv(path:Path, mb:float|None) -> dict:
    "Write a digits-like CSV of about `mb` MB (None: the 1,797 default digits rows once); one bad cell per 10,000 rows."
    import numpy as np
    from sklearn.datasets import load_digits
    d = load_digits()
    tails = [f"{y}," + ','.join(str(int(v)) for v in x) for x, y in zip(d.data, d.target)]
    header = 'id,label,' + ','.join(f'px_{r}_{c}' for r in range(8) for c in range(8)) + '\n'
    target = len(tails) if mb is None else None
    rows, size = 0, len(header)
    with open(path, 'w') as f:
        f.write(header)
        while (rows < target) if target else (size < mb * 1e6):
            block = []
            for i in range(rows, rows + 10_000 if target is None else target):
                t = tails[i % len(tails)]
                if i % 10_000 == 9_999: t = t.rsplit(',', 1)[0] + ',x'    # a bad cell: quarantined
                block.append(f"{i},{t}\n")
            s = ''.join(block)
            f.write(s)
            rows, size = rows + len(block), size + len(s)
    return dict(rows=rows, bytes=path.stat().st_size)

CHILD = r'''
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
mode, src, out, chunk_rows = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
if mode == 'baseline':
    import importlib.util
    spec = importlib.util.spec_from_file_location('old_data', sys.argv[5])
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    schema = m.Schema(min_value=0, max_value=16, labels=list(range(10)), image_shape=[8, 8])
    t1, c1 = time.perf_counter(), cpu()
    clean, rej, schema = m.ingest(str(src), schema, '/', ',', 0.1)
    splits = m.split_dataset(clean)
    meta = m.save_prepared(splits, dict(classes=sorted(clean['label'].unique().tolist())), out/'prepared')
    m.write_quarantine(rej, out/'quarantine')
    n_rows, n_rej = len(clean) + len(rej), len(rej)
else:
    if mode == 'ref':
        import importlib.util
        spec = importlib.util.spec_from_file_location('ref_data', sys.argv[5].replace('old_data', 'ref_data'))
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
    else: from mlops_workbench import data as m
    schema = m.Schema(min_value=0, max_value=16, labels=list(range(10)), image_shape=[8, 8])
    t1, c1 = time.perf_counter(), cpu()
    r = m.ingest_stream(str(src), schema, '/', ',', 0.1, chunk_rows, quarantine=out/'quarantine', split=dict())
    clean, pos = r.clean, r.positions
    meta = m.save_split(clean, pos, dict(classes=sorted(clean['label'].unique().tolist())), out/'prepared', chunk_rows)
    n_rows, n_rej = r.n_rows, r.n_rejected
t2, c2 = time.perf_counter(), cpu()
mem = int(clean.memory_usage(index=False, deep=True).sum())
disk = sum(p.stat().st_size for p in (out/'prepared').glob('*.parquet'))
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(dict(work_s=t2 - t1, work_cpu_s=c2 - c1, import_s=t1 - t0, rows=n_rows, rejected=n_rej,
                      fingerprint=meta['fingerprint'], prepared_mem_bytes=mem, prepared_disk_bytes=disk,
                      maxrss_bytes=maxrss)))
'''

def run_child(mode, src, out, chunk_rows, old_module, timeout) -> dict:
    "Run one prepare in a fresh process; sample the RSS of its process tree every 20 ms."
    import psutil
    env = {**os.environ, 'PYTHONPATH': str(REPO)}
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    p = subprocess.Popen([sys.executable, '-c', CHILD, mode, str(src), str(out), str(chunk_rows), str(old_module)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak, proc = 0, psutil.Process(p.pid)
    while p.poll() is None:
        try: peak = max(peak, sum(q.memory_info().rss for q in [proc] + proc.children(recursive=True)))
        except psutil.Error: pass
        if time.perf_counter() - t0 > timeout:
            p.kill()
            p.wait()
            return dict(error=f'timed out after {timeout} s')
        time.sleep(0.02)
    out_s, err = p.communicate()
    wall = time.perf_counter() - t0
    if p.returncode: return dict(error=err.strip().splitlines()[-1] if err.strip() else f'exit {p.returncode}')
    r = json.loads(out_s.strip().splitlines()[-1])
    q = (Path(out)/'quarantine'/'rejected.csv').read_bytes()
    import hashlib
    return dict(r, wall_s=wall, load_avg_1min=[load0, os.getloadavg()[0]], peak_rss_bytes=max(peak, r['maxrss_bytes']),
                quarantine_sha=hashlib.sha256(q).hexdigest())

def summary(runs, key):
    xs = [r[key] for r in runs if key in r]
    return dict(median=statistics.median(xs), min=min(xs), max=max(xs)) if xs else None

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--sizes', default='default,100,1000',
                    help="comma-separated CSV sizes in MB; 'default' = the 1,797 digits rows")
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--baseline-max-mb', type=float, default=100,
                    help='run the in-memory baseline only up to this size')
    ap.add_argument('--ref', default='', help='also run the streaming path of mlops_workbench/data.py at this commit')
    ap.add_argument('--chunk-rows', type=int, default=100_000)
    ap.add_argument('--timeout', type=int, default=1800, help='per run, seconds')
    ap.add_argument('--out', type=Path, default=HERE/'results'/'data.json')
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix='mlwb-bench-data-'))
    old_module = tmp/'old_data.py'
    old = subprocess.run(['git', 'show', f'{BASELINE_COMMIT}:mlops_workbench/data.py'], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    old_module.write_text(old.replace('from .config import', 'from mlops_workbench.config import'))
    if a.ref:
        ref = subprocess.run(['git', 'show', f'{a.ref}:mlops_workbench/data.py'], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout
        (tmp/'ref_data.py').write_text(ref.replace('from .config import', 'from mlops_workbench.config import'))
    results = dict(machine=dict(python=platform.python_version(), cpus=os.cpu_count(), platform=platform.platform()),
                   date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), chunk_rows=a.chunk_rows, reps=a.reps,
                   baseline_commit=BASELINE_COMMIT, ref_commit=a.ref or None, sizes=[])
    try:
        for size in a.sizes.split(','):
            mb = None if size == 'default' else float(size)
            src = tmp/'data.csv'
            t0 = time.perf_counter()
            info = make_csv(src, mb)
            info['generate_s'] = time.perf_counter() - t0
            entry = dict(size=size, **info, runs={})
            modes = ['new'] + (['ref'] if a.ref else []) + (['baseline'] if (mb or 0) <= a.baseline_max_mb else [])
            for rep in range(a.reps):
                for mode in (modes if rep % 2 == 0 else modes[::-1]):   # alternate who goes first
                    out = tmp/f'out-{mode}'
                    shutil.rmtree(out, ignore_errors=True)
                    r = run_child(mode, src, out, a.chunk_rows, old_module, a.timeout)
                    if 'work_s' in r:
                        r['mb_per_s'] = info['bytes'] / 1e6 / r['work_s']
                        r['mb_per_cpu_s'] = info['bytes'] / 1e6 / r['work_cpu_s']
                    if 'peak_rss_bytes' in r:
                        r['peak_over_prepared_mem'] = r['peak_rss_bytes'] / r['prepared_mem_bytes']
                        r['peak_over_csv'] = r['peak_rss_bytes'] / info['bytes']
                    entry['runs'].setdefault(mode, []).append(r)
                    a.out.parent.mkdir(parents=True, exist_ok=True)   # each run as it ends: a long run can be cut
                    a.out.write_text(json.dumps({**results, 'sizes': results['sizes'] + [entry]}, indent=1))
                    print(size, mode, rep, {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()
                                            if k not in ('fingerprint', 'quarantine_sha')}, flush=True)
                    shutil.rmtree(out, ignore_errors=True)
            src.unlink()
            keys = ('work_s', 'work_cpu_s', 'wall_s', 'mb_per_s', 'mb_per_cpu_s', 'peak_rss_bytes',
                    'peak_over_prepared_mem', 'peak_over_csv')
            entry['summary'] = {m: {k: summary(rs, k) for k in keys} for m, rs in entry['runs'].items()}
            fps = {m: {r.get('fingerprint') for r in rs} for m, rs in entry['runs'].items()}
            qs = {m: {r.get('quarantine_sha') for r in rs} for m, rs in entry['runs'].items()}
            entry['deterministic'] = all(len(v) == 1 for v in fps.values())
            for other in ('baseline', 'ref'):
                if other in fps:
                    entry[f'same_as_{other}'] = dict(fingerprint=fps['new'] == fps[other],
                                                     quarantine=qs['new'] == qs[other])
            results['sizes'].append(entry)
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(results, indent=1))
    finally: shutil.rmtree(tmp, ignore_errors=True)
    keys = ('size', 'bytes', 'rows', 'summary', 'deterministic', 'same_as_baseline', 'same_as_ref')
    print(json.dumps([{k: e.get(k) for k in keys} for e in results['sizes']], indent=1))

if __name__ == '__main__': main()
