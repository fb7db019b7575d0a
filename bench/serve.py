"""Serving throughput and latency: `mlwb serve` (Ray Serve) against `mlflow models serve` of the same registered
version, same machine, same async client, single-row and 64-row requests; also with the shadow challenger on.

Run in a project where the pipeline has run (`make run`):
    .venv/bin/python bench/serve.py [--seconds 15] [--concurrency 8] [--root PROJECT]
Writes bench/results/serve.json and prints a Markdown table."""
import argparse, asyncio, json, os, signal, socket, subprocess, sys, time
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

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seconds', type=float, default=15); ap.add_argument('--concurrency', type=int, default=8)
    ap.add_argument('--no-shadow', action='store_true', help='skip the run with the shadow challenger on')
    ap.add_argument('--root', type=Path, default=ROOT, help='the project (default: this repo)')
    a = ap.parse_args()
    root = a.root.resolve()
    sys.path.insert(0, str(root))
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
    res = Path(__file__).resolve().parent/'results'
    res.mkdir(exist_ok=True)
    (res/'serve.json').write_text(json.dumps(out, indent=2))

if __name__ == '__main__':
    main()
