"""Benchmark: kNN search through the workbench's vector store (Milvus Lite) against exact search (issue 13.2).

For each data set it builds a collection per index configuration with the library's own calls
(`vectors.store_embeddings(..., index=vectors.index_spec(...))`: insert, flush, index, load), then, paired in each
repetition with faiss `IndexFlatL2` (exact, the baseline) on the same queries:

  batch     one `vectors.search` call with 100 queries, k=10 (the embed stage's kind of call)
  single    one query per call (median of 10 queries)
  recall@10 share of the returned neighbours that are among the exact 10 nearest (counted by distance, so that
            duplicate vectors, as in tiled data, do not count as misses)

Data sets: `project` = the default model's embeddings of the 1,797 digits (MLP [128, 64] trained here for 20 epochs,
64-d), `project10` = the same tiled 10x (17,970 rows, as the 10x pipeline stores them), `random100k` = 100,000
standard-normal 64-d vectors, `random1m` = 1,000,000 (slow here: not in the default set). Queries: 100 held-out
vectors of the same kind (for `project`, the embeddings of 100 digits with 1% noise).
Figures are medians with min-max over `--reps` repetitions. Results: bench/results/vectors.json.
`--server`: the same through `mlwb milvus-server` (Milvus Lite's engine in its own process, reached over gRPC at
MILVUS_URI=http://127.0.0.1:PORT), the route the workbench offers to share one store between processes.
Run: `.venv/bin/python bench/vectors.py` (default: project,project10,random100k, 3 reps)."""
import argparse, contextlib, json, os, platform, shutil, socket, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np

HERE = Path(__file__).resolve().parent
# (label, index_spec kwargs, search ef values); FLAT is exact (ef ignored)
CONFIGS = [('HNSW M16', dict(index_type='HNSW', M=16, ef_construction=200), [64, 128, 256, 512]),
           ('HNSW M32', dict(index_type='HNSW', M=32, ef_construction=200), [128, 256, 512]),
           ('FLAT', dict(index_type='FLAT'), [None])]

def project_embeddings() -> tuple: # (vectors, queries)
    "The default model's penultimate-layer embeddings of the digits, and of 100 digits with a little noise."
    from sklearn.datasets import load_digits
    from mlops_workbench.train import build_model, train_model, seed_everything, embed
    X, y = load_digits(return_X_y=True)
    X, y = X.astype('float32'), y.astype('int64')
    seed_everything(42, 1)
    net = build_model('mlp', 64, 10, hidden=[128, 64], dropout=0.1)
    train_model(net, X[:1400], y[:1400], X[1400:], y[1400:], epochs=20, lr=1e-3, device='cpu', progress=False)
    rng = np.random.default_rng(1)
    q = X[rng.choice(len(X), 100, replace=False)] + rng.normal(0, 0.16, (100, 64)).astype('float32')
    return embed(net, X), embed(net, q)

def dataset(name:str) -> tuple:
    rng = np.random.default_rng(0)
    if name.startswith('project'):
        E, Q = project_embeddings()
        return (np.tile(E, (10, 1)) if name == 'project10' else E), Q
    n = {'random100k': 100_000, 'random1m': 1_000_000}[name]
    return rng.normal(size=(n, 64)).astype('float32'), rng.normal(size=(100, 64)).astype('float32')

def timed(fn, reps=1) -> tuple: # (median seconds, result of the last call)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        r = fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), r

def recall(found_d:np.ndarray, exact_d:np.ndarray) -> float:
    "Share of returned neighbours at most as far as the exact k-th nearest (ties count as hits)."
    kth = exact_d[:, -1:] * (1 + 1e-4) + 1e-6
    return float((found_d <= kth).sum() / exact_d.size)

def summary(xs):
    return dict(median=statistics.median(xs), min=min(xs), max=max(xs), n=len(xs))

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--sets', default='project,project10,random100k')
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--configs', default='', help="comma-separated labels of CONFIGS to run (default: all)")
    ap.add_argument('--server', action='store_true', help='search through `mlwb milvus-server` instead of in process')
    ap.add_argument('--out', type=Path, default=HERE/'results'/'vectors.json')
    a = ap.parse_args()
    import faiss
    from mlops_workbench import vectors
    from mlops_workbench.config import load_config
    k = 10
    tmp = Path(tempfile.mkdtemp(prefix='mlwb-bench-vectors-'))
    (tmp/'params.yaml').write_text('project: {}\n')
    server, env = None, {}
    if a.server:   # `mlwb milvus-server` in the temporary project, on a free loopback port
        with contextlib.closing(socket.socket()) as s_:
            s_.bind(('127.0.0.1', 0))
            port = s_.getsockname()[1]
        clean = {k: v for k, v in os.environ.items() if not k.startswith('MILVUS_')}
        mlwb = Path(sys.executable).with_name('mlwb')
        server = subprocess.Popen([str(mlwb), 'milvus-server', '--port', str(port)], cwd=tmp, env=clean,
                                  stdout=open(tmp/'server.log', 'w'), stderr=subprocess.STDOUT)
        t0 = time.monotonic()
        while True:
            with contextlib.closing(socket.socket()) as s_:
                if s_.connect_ex(('127.0.0.1', port)) == 0: break
            if server.poll() is not None or time.monotonic() - t0 > 120:
                raise SystemExit(f"mlwb milvus-server did not listen on {port}: {(tmp/'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        env = {'MILVUS_URI': f'http://127.0.0.1:{port}'}
    client = vectors.connect(load_config(tmp, env=env))
    res = dict(machine=dict(python=platform.python_version(), cpus=os.cpu_count(), platform=platform.platform(),
                            faiss=faiss.__version__, faiss_threads=faiss.omp_get_max_threads()),
               date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), reps=a.reps, k=k, sets=[],
               store='mlwb milvus-server' if a.server else 'Milvus Lite in process', command=' '.join(sys.argv))
    configs = [c for c in CONFIGS if not a.configs or c[0] in a.configs.split(',')]
    try:
        for name in a.sets.split(','):
            X, Q = dataset(name)
            flat = faiss.IndexFlatL2(X.shape[1])
            flat.add(X)
            exact_d, _ = flat.search(Q, k)
            # both faiss and Milvus Lite 3 report squared L2 distances
            entry = dict(set=name, rows=len(X), dim=X.shape[1], queries=len(Q), configs=[])
            meta = dict(id=[str(i) for i in range(len(X))], label='0', split='train', prediction='0', model_version=1,
                        run_id='bench', data_fingerprint='bench')
            for label, spec, efs in configs:
                coll = 'bench_' + label.replace(' ', '_')
                t0 = time.perf_counter()
                vectors.store_embeddings(client, coll, X, meta, batch_size=2000, progress=False,
                                         index=vectors.index_spec(**spec))
                build_s = time.perf_counter() - t0
                for ef in efs:
                    runs = []
                    for rep in range(a.reps):
                        fb, _ = timed(lambda: flat.search(Q, k))
                        mb, hits = timed(lambda: vectors.search(client, coll, Q, k, batch_size=len(Q), ef=ef))
                        fs, _ = timed(lambda: [flat.search(Q[i:i + 1], k) for i in range(10)])
                        ms, _ = timed(lambda: [vectors.search(client, coll, Q[i], k, ef=ef) for i in range(10)])
                        found = np.array([[h['distance'] for h in hs] + [np.inf] * (k - len(hs)) for hs in hits])
                        runs.append(dict(faiss_batch_ms=fb * 1e3, milvus_batch_ms=mb * 1e3, faiss_single_ms=fs * 100,
                                         milvus_single_ms=ms * 100, recall=recall(found, exact_d)))
                        r = runs[-1]
                        print(name, label, f'ef={ef}', rep, {k_: round(v, 3) for k_, v in r.items()}, flush=True)
                    s = {key: summary([r[key] for r in runs]) for key in runs[0]}
                    s['batch_x_faiss'] = summary([r['milvus_batch_ms'] / r['faiss_batch_ms'] for r in runs])
                    s['single_x_faiss'] = summary([r['milvus_single_ms'] / r['faiss_single_ms'] for r in runs])
                    entry['configs'].append(dict(config=label, index=vectors.index_spec(**spec), ef=ef,
                                                 build_s=build_s, summary=s, runs=runs))
                client.drop_collection(coll)
            res['sets'].append(entry)
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(res, indent=1))
    finally:
        if server is not None:
            server.terminate()
            try: server.wait(120)
            except subprocess.TimeoutExpired: server.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    for e in res['sets']:
        for c in e['configs']:
            s = c['summary']
            print(f"{e['set']:>10} {c['config']:>9} ef={c['ef']}: recall {s['recall']['median']:.3f}, "
                  f"batch {s['milvus_batch_ms']['median']:.1f} ms ({s['batch_x_faiss']['median']:.1f}x faiss), "
                  f"single {s['milvus_single_ms']['median']:.1f} ms ({s['single_x_faiss']['median']:.1f}x), "
                  f"build {c['build_s']:.1f} s")

if __name__ == '__main__': main()
