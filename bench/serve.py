"""Serving throughput and latency: `mlwb serve` (Ray Serve) against `mlflow models serve` of the same registered
version, same machine, same async client, single-row and 64-row requests; also with the shadow challenger on.
Batch inference: `predict_file` (what `mlwb predict FILE` runs) against a plain torch loop over the same file.
A swap's extra memory: RSS of the replica process before, during and after zero-downtime swaps (on a copy of the
project).

Run in a project where the pipeline has run (`make run`):
    .venv/bin/python bench/serve.py [--seconds 15] [--concurrency 8] [--root PROJECT] [--only http,batch,swap]
Writes bench/results/serve.json (http), serve_batch.json and serve_swap.json, and prints Markdown tables."""
import argparse, asyncio, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def wait_http(url:str, proc, timeout:float=300):
    import httpx
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None: raise RuntimeError(f"{proc.args[:4]} exited {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200: return time.monotonic() - t0
        except httpx.HTTPError: pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")

async def drive(url:str, body:bytes, seconds:float, concurrency:int) -> dict:
    "Closed-loop load: `concurrency` workers post `body` back to back for `seconds`; latencies of the 200s."
    import httpx
    lat, errors, stop = [], 0, time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as c:
        async def worker():
            nonlocal errors
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try: r = await c.post(url, content=body, headers={'content-type': 'application/json'})
                except httpx.HTTPError: errors += 1; continue
                if r.status_code == 200: lat.append(time.perf_counter() - t0)
                else: errors += 1
        t0 = time.monotonic()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        wall = time.monotonic() - t0
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float('nan')
    return dict(requests=len(lat), errors=errors, rps=len(lat) / wall, p50_ms=q(0.5), p99_ms=q(0.99))

def spread(xs:list) -> dict:
    "Median, min and max of repeated measurements."
    return dict(median=statistics.median(xs), min=min(xs), max=max(xs), n=len(xs))

def plain_torch(path:Path, version:int, cfg, out:Path, batch_size:int=4096) -> int:
    "The baseline: load the version, read the file, a torch loop over batches, write class + probabilities."
    import numpy as np, pandas as pd, torch
    from mlops_workbench.config import read_json
    from mlops_workbench.tracking import load_torch_model
    meta = read_json(cfg.path('data', 'prepared', 'meta.json'))
    model = load_torch_model(version, cfg)
    X = torch.from_numpy(pd.read_parquet(path)[meta['features']].to_numpy(dtype='float32'))
    with torch.no_grad():
        P = torch.cat([torch.softmax(model(X[i:i + batch_size]), 1) for i in range(0, len(X), batch_size)]).numpy()
    res = pd.DataFrame({'prediction': np.asarray(meta['classes'])[P.argmax(1)]})
    for j, c in enumerate(meta['classes']): res[f'p_{c}'] = P[:, j]
    res.to_parquet(out, index=False)
    return len(res)

def bench_batch(root:Path, rows:int, repeats:int) -> dict:
    "`predict_file` (validation, stamps, quarantine, atomic write) vs `plain_torch`, alternating, on one parquet file."
    import pandas as pd
    from mlops_workbench.config import load_config, read_json
    from mlops_workbench.registry import aliases
    from mlops_workbench.serve import predict_file
    cfg = load_config(root); v = aliases(cfg)['champion']
    feats = read_json(cfg.path('data', 'prepared', 'meta.json'))['features']
    te = pd.read_parquet(cfg.path('data', 'prepared', 'test.parquet'))[feats]
    df = pd.concat([te] * (rows // len(te) + 1), ignore_index=True).head(rows)
    tmp = Path(tempfile.mkdtemp(prefix='bench-batch-'))
    f = tmp/'batch.parquet'; df.to_parquet(f, index=False)
    times = {'mlwb': [], 'torch': [], 'cli': []}
    plain_torch(f, v, cfg, tmp/'warm.parquet')   # warm the caches (imports, the file, the model's files)
    predict_file(f, cfg, version=v, out=tmp/'warm2.parquet')
    for _ in range(repeats):
        t0 = time.perf_counter(); r = predict_file(f, cfg, version=v, out=tmp/'mlwb.parquet')
        times['mlwb'].append(time.perf_counter() - t0)
        assert r['predicted'] == rows, r
        t0 = time.perf_counter(); plain_torch(f, v, cfg, tmp/'torch.parquet')
        times['torch'].append(time.perf_counter() - t0)
    env = {**os.environ, 'PYTHONPATH': str(root)}
    cli = [sys.executable, '-c', 'import sys; from mlops_workbench.cli import main; sys.exit(main())',
           'predict', str(f), '--version', str(v)]
    for _ in range(repeats):   # the command as a user runs it: interpreter start and imports included
        t0 = time.perf_counter(); subprocess.run(cli, cwd=root, env=env, check=True, capture_output=True, timeout=600)
        times['cli'].append(time.perf_counter() - t0)
    out = dict(rows=rows, version=v, file_mb=f.stat().st_size / 2**20,
               **{k: dict(seconds=spread(t), rows_per_s=spread([rows / x for x in t])) for k, t in times.items()})
    out['ratio'] = spread([t / m for m, t in zip(times['mlwb'], times['torch'])])   # per pair: mlwb rows/s / torch's
    shutil.rmtree(tmp, ignore_errors=True)
    return out

REGISTER_COPY = r'''
import torch
from mlops_workbench.config import load_config, read_json
from mlops_workbench.registry import aliases, register_model, move_alias
from mlops_workbench.tracking import load_torch_model, stage_run
cfg = load_config(); roles = aliases(cfg); meta = read_json(cfg.path('data', 'prepared', 'meta.json'))
m = load_torch_model(roles['champion'], cfg)
with torch.no_grad(): next(m.parameters()).add_(1e-6)   # the same model, other weights: a new version of the same size
X = torch.zeros((5, len(meta['features']))).numpy()
with stage_run('train', fingerprint=meta['fingerprint'], cfg=cfg) as (c, rid):
    v = register_model(m, X, rid, cfg).version
if aliases(cfg).get('challenger') is not None:
    move_alias('challenger', None, 'bench: no shadow in the swap run', cfg=cfg)
print(roles['champion'], v)
'''

def replica_rss(server) -> dict:
    "RSS in bytes of each Ray Serve replica process under the server."
    import psutil
    out = {}
    for c in psutil.Process(server.pid).children(recursive=True):
        try:
            if 'ServeReplica' in ' '.join(c.cmdline()): out[c.pid] = c.memory_info().rss
        except psutil.Error: pass
    return out

def bench_swap(root:Path, swaps:int) -> dict:
    "Zero-downtime swaps back and forth on a copy of the project, under light load: replica RSS before/peak/after."
    import httpx
    sys.path.insert(0, str(ROOT/'tools'))
    import testkit
    tmp = Path(tempfile.mkdtemp(prefix='bench-swap-'))
    copy = testkit.copy_run(root, tmp/'p')
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    for k in [k for k in env if k.startswith(('MLFLOW_', 'MILVUS_', 'RAY_ADDRESS'))]: del env[k]
    a, b = map(int, subprocess.run([sys.executable, '-c', REGISTER_COPY], cwd=copy, env=env, check=True,
                                   capture_output=True, text=True, timeout=600).stdout.split()[-2:])
    port = free_port(); env['MLWB_SERVE_PORT'] = str(port); url = f'http://127.0.0.1:{port}'
    cmd = [sys.executable, '-c', 'import sys; from mlops_workbench.cli import main; sys.exit(main(["serve"]))']
    p = subprocess.Popen(cmd, cwd=copy, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    rows = json.dumps({'rows': [[0.0] * 64] * 8}).encode()
    stop, codes, recs = threading.Event(), [], []
    def load():   # one client posting back to back: the swap happens under traffic
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                try: codes.append(c.post(url + '/predict', content=rows, headers={'content-type': 'application/json'})
                                  .status_code)
                except httpx.HTTPError: codes.append(-1)
    def version():
        return httpx.get(url + '/version', timeout=10).json()['model_version']
    try:
        print(f"swap: mlwb serve ready in {wait_http(url + '/readyz', p):.1f} s", flush=True)
        t = threading.Thread(target=load, daemon=True); t.start()
        time.sleep(3)
        for i in range(swaps):
            target = b if i % 2 == 0 else a
            before = [sum(replica_rss(p).values()) for _ in range(10) if not time.sleep(0.1)]
            pr = subprocess.Popen([sys.executable, '-c', 'import sys; from mlops_workbench.registry import promote; '
                                   f'promote({target}, "bench: swap memory")'], cwd=copy, env=env)
            during, t0 = [], time.monotonic()
            while pr.poll() is None or version() != target:
                during.append(sum(replica_rss(p).values()))
                if time.monotonic() - t0 > 120: raise TimeoutError(f"v{target} not served within 120 s")
                time.sleep(0.02)
            for _ in range(25): during.append(sum(replica_rss(p).values())); time.sleep(0.02)   # the old one's release
            time.sleep(1)
            after = [sum(replica_rss(p).values()) for _ in range(10) if not time.sleep(0.1)]
            recs.append(dict(to=target, before=statistics.median(before), peak=max(during),
                             after=statistics.median(after), seconds=time.monotonic() - t0))
            print(f"swap {i + 1}: v{target} extra RSS peak {(max(during) - statistics.median(before)) / 2**20:.1f} MiB",
                  flush=True)
    finally:
        stop.set()
        with_group = os.getpgid(p.pid)
        os.killpg(with_group, signal.SIGTERM)
        try: p.wait(120)
        except subprocess.TimeoutExpired: os.killpg(with_group, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
    mib = lambda x: x / 2**20
    return dict(swaps=len(recs), requests=len(codes), failed=sum(c != 200 for c in codes),
                before_mib=spread([mib(r['before']) for r in recs]),
                extra_peak_mib=spread([mib(r['peak'] - r['before']) for r in recs]),
                extra_after_mib=spread([mib(r['after'] - r['before']) for r in recs]), records=recs)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seconds', type=float, default=15); ap.add_argument('--concurrency', type=int, default=8)
    ap.add_argument('--no-shadow', action='store_true', help='skip the run with the shadow challenger on')
    ap.add_argument('--root', type=Path, default=ROOT, help='the project (default: this repo)')
    ap.add_argument('--only', default='http,batch,swap', help='which parts: http, batch, swap (comma-separated)')
    ap.add_argument('--rows', type=int, default=200_000, help='rows of the batch-inference file')
    ap.add_argument('--repeats', type=int, default=5, help='repeats of the batch and swap measurements')
    a = ap.parse_args()
    root = a.root.resolve()
    sys.path.insert(0, str(root))
    parts = set(a.only.split(','))
    res = Path(__file__).resolve().parent/'results'
    res.mkdir(exist_ok=True)
    if 'batch' in parts:
        b = bench_batch(root, a.rows, a.repeats)
        (res/'serve_batch.json').write_text(json.dumps(b, indent=2))
        print(f"\n| batch of {b['rows']:,} rows | rows/s median | min | max |\n|---|---:|---:|---:|")
        for k, name in (('mlwb', 'predict_file (mlwb predict, in process)'), ('torch', 'plain torch loop'),
                        ('cli', '`mlwb predict FILE` (command, with start-up)')):
            x = b[k]['rows_per_s']
            print(f"| {name} | {x['median']:,.0f} | {x['min']:,.0f} | {x['max']:,.0f} |")
        r = b['ratio']
        print(f"predict_file / torch loop: {r['median']:.2f}x (min {r['min']:.2f}, max {r['max']:.2f})")
    if 'swap' in parts:
        s = bench_swap(root, a.repeats)
        (res/'serve_swap.json').write_text(json.dumps(s, indent=2))
        f = lambda d: f"{d['median']:.1f} (min {d['min']:.1f}, max {d['max']:.1f})"
        print(f"\nswaps: {s['swaps']}, requests {s['requests']}, failed {s['failed']}; replica RSS before "
              f"{f(s['before_mib'])} MiB, extra at the peak {f(s['extra_peak_mib'])} MiB, extra after "
              f"{f(s['extra_after_mib'])} MiB")
    if 'http' not in parts: return
    from mlops_workbench.config import load_config, read_json
    from mlops_workbench.registry import aliases
    cfg = load_config(root); roles = aliases(cfg); v = roles['champion']
    feats = read_json(cfg.path('data', 'prepared', 'meta.json'))['features']
    import pandas as pd
    X = pd.read_parquet(cfg.path('data', 'prepared', 'test.parquet'))[feats].head(64).to_numpy().tolist()
    env = {**os.environ, 'PYTHONPATH': str(root), 'MLFLOW_SERVER_ENABLE_JOB_EXECUTION': 'false'}
    out, procs = dict(version=v, seconds=a.seconds, concurrency=a.concurrency, runs={}), []
    def start(name, cmd, probe):
        p = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        procs.append(p)
        print(f"{name}: ready in {wait_http(probe, p):.1f} s", flush=True)
        return p
    def stop(p):
        with_group = os.getpgid(p.pid)
        os.killpg(with_group, signal.SIGTERM)
        try: p.wait(60)
        except subprocess.TimeoutExpired: os.killpg(with_group, signal.SIGKILL)
    try:
        split = {n: {'dataframe_split': {'columns': feats, 'data': X[:n]}} for n in (1, 64)}   # named float columns
        bodies = {'mlflow': {n: json.dumps(b) for n, b in split.items()},
                  'mlwb': {1: json.dumps({'rows': X[:1]}), 64: json.dumps({'rows': X})}}
        pm = free_port()
        cmd = [sys.executable, '-m', 'mlflow', 'models', 'serve', '-m', f'models:/{cfg.model_name}/{v}',
               '--env-manager', 'local', '--host', '127.0.0.1', '-p', str(pm), '--workers', '1']
        p = start('mlflow models serve', cmd, f'http://127.0.0.1:{pm}/ping')
        for n in (1, 64):
            body = bodies['mlflow'][n].encode()
            out['runs'][f'mlflow_{n}'] = asyncio.run(drive(f'http://127.0.0.1:{pm}/invocations', body, a.seconds,
                                                           a.concurrency))
        stop(p)
        no_shadow = a.no_shadow or roles.get('challenger', v) == v
        for shadow in ([False] if no_shadow else [False, True]):
            from mlops_workbench.registry import move_alias
            saved = roles.get('challenger')
            if not shadow and saved is not None and saved != v:   # champion only: no challenger in the shadow
                move_alias('challenger', None, 'bench/serve.py: champion-only run', cfg=cfg)
            ps = free_port(); env['MLWB_SERVE_PORT'] = str(ps)
            cmd = [sys.executable, '-c', 'import sys; from mlops_workbench.cli import main; sys.exit(main(["serve"]))']
            p = start(f"mlwb serve{' + shadow' if shadow else ''}", cmd, f'http://127.0.0.1:{ps}/readyz')
            for n in (1, 64):
                out['runs'][f"mlwb{'_shadow' if shadow else ''}_{n}"] = asyncio.run(
                    drive(f'http://127.0.0.1:{ps}/predict', bodies['mlwb'][n].encode(), a.seconds, a.concurrency))
            stop(p)
            if not shadow and saved is not None and saved != v:
                move_alias('challenger', saved, 'bench/serve.py: restore the challenger', cfg=cfg)
    finally:
        for p in procs:
            if p.poll() is None: stop(p)
    r = out['runs']
    print(f"\n| server | rows/request | req/s | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|---:|")
    for k, x in r.items():
        name, n = k.rsplit('_', 1)
        print(f"| {name} | {n} | {x['rps']:.1f} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} | {x['errors']} |")
    for n in (1, 64):
        if f'mlwb_{n}' in r and f'mlflow_{n}' in r:
            print(f"{n} row(s): throughput {r[f'mlwb_{n}']['rps'] / r[f'mlflow_{n}']['rps']:.2f}x mlflow, "
                  f"p99 {r[f'mlwb_{n}']['p99_ms'] / r[f'mlflow_{n}']['p99_ms']:.2f}x")
        if f'mlwb_shadow_{n}' in r:
            ratio = r[f'mlwb_shadow_{n}']['rps'] / r[f'mlwb_{n}']['rps']
            print(f"{n} row(s) with the shadow: {ratio:.2f}x champion-only throughput")
    (res/'serve.json').write_text(json.dumps(out, indent=2))

if __name__ == '__main__':
    main()
