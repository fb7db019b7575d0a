"""Benchmark: ONNX (onnxruntime) vs torch eager on CPU, int8 vs fp32, bundle size, an idle agent's memory, and the
convergence time of a fleet of agents after a publish.

Self-contained (no pipeline state needed): trains params.yaml's train-section model on digits in-process (`--quick`: a
smaller one), exports it with the parity proof on the test split (`export.export_model`), quantizes it
(`export.quantize_export`), signs and publishes it to a scratch channel, then runs `mlwb-edge` agents as separate
processes (`python -c 'from mlops_workbench.edge import main; ...'`) on it.

Run: `.venv/bin/python bench/edge.py` (results: bench/results/edge.json; summarised in bench/README.md by hand)."""
import argparse, json, platform, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np, yaml

HERE = Path(__file__).resolve().parent
AGENT = [sys.executable, '-c', 'import sys; from mlops_workbench.edge import main; sys.exit(main())']

def train(params:dict, quick:bool):
    from mlops_workbench.data import load_digits_frame, split_dataset, to_arrays
    from mlops_workbench.train import build_model, train_model, seed_everything
    prep, tr = params['prepare'], dict(params['train'])
    if quick: tr.update(hidden=[32], epochs=5, lr=0.01)
    df = load_digits_frame()
    splits = split_dataset(df, prep['test_size'], prep['val_size'], prep['seed'])
    meta = dict(features=[c for c in df.columns if c.startswith('px_')], classes=list(range(10)))
    (Xtr, ytr), (Xva, yva), (Xte, yte) = (to_arrays(splits[k], meta) for k in ('train', 'val', 'test'))
    seed_everything(tr['seed'], 1)
    net = build_model(tr['model'], Xtr.shape[1], 10, tr['hidden'], tr['dropout'], [8, 8])
    train_model(net, Xtr, ytr, Xva, yva, epochs=tr['epochs'], batch_size=tr['batch_size'], lr=tr['lr'],
                weight_decay=tr['weight_decay'], seed=tr['seed'], device='cpu', progress=False)
    return net.eval(), Xte, yte, meta, tr

def statuses(devs):
    out = []
    for d in devs:
        try: out.append(json.loads((d/'status.json').read_text()))
        except (FileNotFoundError, json.JSONDecodeError): out.append({})
    return out

def wait(devs, pred, bound:float=60) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < bound:
        if all(pred(s) for s in statuses(devs)): return time.monotonic() - t0
        time.sleep(0.02)
    raise TimeoutError(f"agents did not converge within {bound}s: {statuses(devs)}")

def agents(ch:Path, devs:list, pub:str, poll:float):
    return [subprocess.Popen([*AGENT, 'run', '--channel', str(ch), '--device', str(d), '--trust', pub, '--poll', str(poll)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for d in devs]

def stop(procs):
    for p in procs: p.terminate()
    for p in procs:
        try: p.wait(timeout=20)
        except subprocess.TimeoutExpired: p.kill()

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--quick', action='store_true', help='a smaller model, fewer timing reps')
    ap.add_argument('--rows', type=int, default=2000, help='single-row calls timed per repetition')
    ap.add_argument('--reps', type=int, default=3, help='repetitions of the latency measurement (median taken)')
    ap.add_argument('--devices', type=int, default=5)
    ap.add_argument('--poll', type=float, default=1.0)
    ap.add_argument('--rounds', type=int, default=5, help='publishes the fleet converges on')
    ap.add_argument('--out', type=Path, default=HERE/'results'/'edge.json')
    a = ap.parse_args()
    import psutil
    from mlops_workbench.export import (export_model, quantize_export, latency, onnx_session, keygen, load_signing_key,
                                        publish_export)
    params = yaml.safe_load((HERE.parent/'params.yaml').read_text())
    ex = params.get('export') or {}
    t0 = time.monotonic()
    net, X, y, meta, tr = train(params, a.quick)
    res = dict(machine=platform.platform(), python=platform.python_version(), cpus=psutil.cpu_count(), quick=a.quick,
               model=dict(kind=tr['model'], hidden=tr['hidden']), train_s=time.monotonic() - t0)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        info = dict(model_name='bench', version=1, run_id='bench', git_commit=None, data_fingerprint='bench',
                    features=meta['features'], classes=meta['classes'])
        rec = export_model(net, X, y, d/'v1', info, ex.get('opset', 17), ex.get('tolerance', 1e-4), latency_rows=10)
        res['parity'] = {k: rec['parity'][k] for k in ('n', 'argmax_mismatches', 'max_abs_diff', 'tolerance', 'passed')}
        sess = onnx_session(d/'v1'/'model.onnx')
        lats = [latency(net, sess, X, 200 if a.quick else a.rows) for _ in range(a.reps)]
        res['latency'] = {k: float(np.median([l[k] for l in lats])) for k in lats[0]}
        res['int8'] = quantize_export(d/'v1', X, y, 200 if a.quick else a.rows)
        k = keygen(d/'keys'/'sign.key')
        key = load_signing_key(k['private'])
        ch = d/'channel'
        m = publish_export(d/'v1', ch, key)
        res['bundle'] = dict(files={f: v['bytes'] for f, v in m['files'].items()},
                             total_bytes=sum(f.stat().st_size for f in (ch/'bundles'/'000001').iterdir()))
        # one idle agent: memory once it holds the model and sleeps between polls
        dev = d/'idle'
        [p] = agents(ch, [dev], k['public'], a.poll)
        try:
            wait([dev], lambda s: s.get('sequence') == 1)
            time.sleep(3)
            mi = psutil.Process(p.pid).memory_full_info()
            res['agent_idle'] = dict(rss_mb=mi.rss / 2**20, uss_mb=mi.uss / 2**20,
                                     torch_loaded=False)   # the agent's module imports no torch (tests check it)
        finally: stop([p])
        # the fleet: time from publish until every device reports the new sequence
        devs = [d/f'dev{i}' for i in range(a.devices)]
        procs = agents(ch, devs, k['public'], a.poll)
        try:
            wait(devs, lambda s: s.get('sequence') == 1)
            times = []
            for r in range(a.rounds):
                t1 = time.monotonic()
                seq = publish_export(d/'v1', ch, key)['sequence']
                times.append(wait(devs, lambda s, seq=seq: s.get('sequence') == seq))
            res['fleet'] = dict(devices=a.devices, poll_s=a.poll, rounds=a.rounds, convergence_s=times,
                                p50_s=float(np.median(times)), p100_s=float(max(times)))
        finally: stop(procs)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + '\n')
    L, q = res['latency'], res['int8']
    print(f"parity: {res['parity']}")
    print(f"single row: onnx {L['single_ms_onnx']:.4f} ms, torch {L['single_ms_torch']:.4f} ms ({L['single_speedup']:.2f}x); "
          f"batch 256: onnx {L['batch256_ms_onnx']:.3f} ms, torch {L['batch256_ms_torch']:.3f} ms ({L['batch256_speedup']:.2f}x)")
    print(f"int8: accuracy {q['accuracy_int8']:.4f} vs fp32 {q['accuracy_fp32']:.4f}, same class {q['same_class']:.3f}, "
          f"{q['bytes_int8']} vs {q['bytes_fp32']} bytes, single row {q['single_ms_int8']:.4f} vs {q['single_ms_fp32']:.4f} ms")
    print(f"bundle: {res['bundle']}; idle agent: {res['agent_idle']['rss_mb']:.1f} MB RSS, {res['agent_idle']['uss_mb']:.1f} MB USS")
    print(f"fleet: {res['fleet']}")

if __name__ == '__main__':
    main()
