"""Benchmark: the scale-out path (issue 3's goals).

  (a) training throughput: samples/s of the workbench's training path (`distributed.fit`, in process and on a
      1-worker Ray Train group) vs a plain torch loop with the same model, data, batches and threads;
      plus the wall time of the default training (digits, 20 epochs) in process, on 1 and on 2 Ray Train workers.
  (b) sweep orchestration: 16 trials of a 1-second objective at concurrency 2 (after Ray is up): wall time vs
      the ideal 16 x 1 s / 2, per-trial overhead and parallel efficiency, deterministic and as-they-come modes,
      with MLflow tracking (parent + 16 children on SQLite) and without.
  (c) tracking overhead: MLflow time as a share of training wall time, for the train stage's tracking calls
      (run, params, per-epoch metrics, tags) and separately the model logging + registration.
Run: `.venv/bin/python bench/scale.py` (about 3-4 minutes here). Results: bench/results/scale.json."""
import argparse, json, os, platform, statistics, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent

def plain_loop(model, X, y, epochs, batch_size, lr, seed):
    "The reference: a bare torch loop (shuffle, forward, loss, backward, step) with no evaluation or bookkeeping."
    import torch
    from torch import nn
    model.norm.fit(X); Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    opt, loss_fn, gen = torch.optim.Adam(model.parameters(), lr=lr), nn.CrossEntropyLoss(), torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for b in torch.randperm(len(Xt), generator=gen).split(batch_size):
            opt.zero_grad(set_to_none=True); loss_fn(model(Xt[b]), yt[b]).backward(); opt.step()
    return len(X)*epochs/(time.perf_counter() - t0)

def throughput(reps):
    "(a) samples/s: workbench path vs plain loop, on digits tiled x20 (25k rows) so an epoch is long enough to time."
    import numpy as np, torch
    from sklearn.datasets import load_digits
    from mlops_workbench.train import seed_everything, build_model, TrainSpec
    from mlops_workbench.distributed import fit, ray_runtime
    X, y = load_digits(return_X_y=True); X, y = X.astype('float32'), y.astype('int64')
    Xb, yb = np.tile(X[:1257], (20, 1)), np.tile(y[:1257], 20); Xv, yv = X[1257:], y[1257:]
    spec = TrainSpec(hidden=[128, 64], dropout=0.1, epochs=5, batch_size=64, lr=1e-3, seed=0, threads=1, device='cpu')
    args, kw = spec.model_args(64, 10), dict(epochs=spec.epochs)
    plain, local, ray1 = [], [], []
    for _ in range(reps):
        seed_everything(0, 1); plain.append(plain_loop(build_model(**args), Xb, yb, kw['epochs'], 64, 1e-3, 0))
        t0 = time.perf_counter(); _, h, _ = fit(spec, Xb, yb, Xv, yv, 10, backend='local', progress=False)
        local.append(dict(wall=len(Xb)*kw['epochs']/(time.perf_counter() - t0), steady=statistics.median(r['samples_per_second'] for r in h[1:])))
    with ray_runtime(num_cpus=2):
        for _ in range(reps):
            _, h, info = fit(spec, Xb, yb, Xv, yv, 10, backend='ray')
            ray1.append(dict(steady=statistics.median(r['samples_per_second'] for r in h[1:]), fit_s=info['fit_seconds'],
                             train_s=sum(r['epoch_seconds'] for r in h)))
    p = statistics.median(plain)
    return dict(rows=len(Xb), epochs=kw['epochs'], plain_samples_per_s=p,
                local_wall_samples_per_s=statistics.median(r['wall'] for r in local), local_epoch_samples_per_s=statistics.median(r['steady'] for r in local),
                ray1_epoch_samples_per_s=statistics.median(r['steady'] for r in ray1), ray1_fit_s=statistics.median(r['fit_s'] for r in ray1),
                ray1_start_cost_s=statistics.median(r['fit_s'] - r['train_s'] for r in ray1),
                ratio_local_wall=statistics.median(r['wall'] for r in local)/p, ratio_local_epoch=statistics.median(r['steady'] for r in local)/p,
                ratio_ray1_epoch=statistics.median(r['steady'] for r in ray1)/p, raw=dict(plain=plain, local=local, ray1=ray1))

def default_training():
    "Wall time of the default training config (digits, MLP [128, 64], 20 epochs) per backend."
    from sklearn.datasets import load_digits
    from mlops_workbench.distributed import fit, ray_runtime
    from mlops_workbench.train import TrainSpec
    X, y = load_digits(return_X_y=True); X, y = X.astype('float32'), y.astype('int64')
    spec = TrainSpec(hidden=[128, 64], dropout=0.1, epochs=20, batch_size=64, lr=1e-3, seed=42, threads=1, device='cpu')
    out = {}
    t0 = time.perf_counter(); _, h, _ = fit(spec, X[:1257], y[:1257], X[1257:], y[1257:], 10, backend='local', progress=False)
    out['local'] = dict(wall_s=time.perf_counter() - t0, val_accuracy=h[-1]['val_accuracy'])
    t0 = time.perf_counter()
    with ray_runtime(num_cpus=2):
        init = time.perf_counter() - t0
        for n in (1, 2):
            t1 = time.perf_counter(); _, h, _ = fit(spec, X[:1257], y[:1257], X[1257:], y[1257:], 10, backend='ray', num_workers=n)
            out[f'ray_{n}_workers'] = dict(wall_s=time.perf_counter() - t1, val_accuracy=h[-1]['val_accuracy'],
                                           epoch_s=statistics.median(r['epoch_seconds'] for r in h[1:]))
    out['ray_init_s'] = init
    return out

def sleeper(seconds):
    "A trial objective that takes `seconds` of wall time (the orchestration around it is what is measured)."
    def trial(params, data, report):
        time.sleep(seconds); report(1, params['lr']); return [{'step': 1, 'value': params['lr']}]
    return trial

def sweep_overhead(reps=3, n=16, concurrency=2, trial_seconds=(1.0, 0.25), modes=('untracked', 'mlflow')):
    "(b) `n` trials of a fixed length at concurrency 2, untracked and with MLflow child runs, paired in each repetition."
    from mlops_workbench.config import load_config
    from mlops_workbench.distributed import ray_runtime
    from mlops_workbench.sweep import search_space, open_study, run_sweep
    from mlops_workbench.tracking import stage_run, ensure_store
    space = search_space(['mlp'], [[8]], [1e-4, 1.0], [0.0, 0.1], [32])
    rows = []
    with tempfile.TemporaryDirectory() as d, ray_runtime(num_cpus=concurrency):
        cfg = load_config(d, env={}); ensure_store(cfg)
        kw = dict(n_trials=n, concurrency=concurrency, pruner={'name': 'none'}, progress=False)
        with open_study(Path(d)/'warm.journal', 'warm') as st: run_sweep(st, sleeper(0.1), space, None, **{**kw, 'n_trials': 2})
        for rep in range(reps):
            for secs in trial_seconds:
                for mode in modes:   # paired: both modes in every repetition, alternating which goes first
                    name = f'{mode}-{secs}-{rep}'
                    with open_study(Path(d)/f'{name}.journal', name, pruner={'name': 'none'}) as st:
                        t0 = time.perf_counter()
                        if mode == 'mlflow':
                            with stage_run('sweep', {'bench': name}, cfg=cfg) as (client, parent):
                                s = run_sweep(st, sleeper(secs), space, None, client=client, parent_id=parent, **kw)
                        else: s = run_sweep(st, sleeper(secs), space, None, **kw)
                        wall = time.perf_counter() - t0
                    ideal = n*secs/concurrency
                    rows.append(dict(mode=mode, trial_s=secs, rep=rep, wall_s=wall, n_trials=s['n_trials'],
                                     overhead_per_trial_s=(wall - ideal)*concurrency/n, efficiency=ideal/wall))
            modes = modes[::-1]
    out = {}
    for secs in trial_seconds:
        for mode in sorted({r['mode'] for r in rows}):
            sel = [r for r in rows if r['trial_s'] == secs and r['mode'] == mode]
            o, e = [r['overhead_per_trial_s'] for r in sel], [r['efficiency'] for r in sel]
            out[f'{mode}_{secs}s'] = dict(overhead_per_trial_s=statistics.median(o), overhead_spread=[min(o), max(o)],
                                         efficiency=statistics.median(e), efficiency_spread=[min(e), max(e)], reps=len(sel))
    return dict(**out, goal='per-trial overhead <= 0.1 s; efficiency >= 0.85 (1 s trials), >= 0.75 (0.25 s), with MLflow',
                raw=rows)

def tracking_overhead(reps):
    "(c) MLflow time vs training time for a train-stage-sized run (digits tiled x10, 20 epochs)."
    import numpy as np
    from sklearn.datasets import load_digits
    from mlops_workbench.config import load_config
    from mlops_workbench.distributed import fit
    from mlops_workbench.tracking import stage_run, log_metrics, log_torch_model, ensure_store
    from mlops_workbench.train import TrainSpec
    X, y = load_digits(return_X_y=True); X, y = X.astype('float32'), y.astype('int64')
    Xb, yb = np.tile(X[:1257], (10, 1)), np.tile(y[:1257], 10)
    spec = TrainSpec(hidden=[128, 64], dropout=0.1, epochs=20, seed=0, threads=1, device='cpu')
    rows = []
    with tempfile.TemporaryDirectory() as d:
        cfg = load_config(d, env={}); ensure_store(cfg)
        for _ in range(reps):
            t0 = time.perf_counter(); cm = stage_run('train', spec.asdict(), 'f00', cfg=cfg); client, rid = cm.__enter__(); t_open = time.perf_counter() - t0
            m, h, info = fit(spec, Xb, yb, X[1257:], y[1257:], 10, backend='local', progress=False)
            t0 = time.perf_counter(); log_metrics(client, rid, h); log_metrics(client, rid, {'train_seconds': info['fit_seconds']}); client.set_tag(rid, 'mlwb.device', 'cpu')
            t_log = time.perf_counter() - t0
            t0 = time.perf_counter(); log_torch_model(m, Xb[:5], rid, cfg=cfg); t_model = time.perf_counter() - t0
            t0 = time.perf_counter(); cm.__exit__(None, None, None); t_close = time.perf_counter() - t0
            rows.append(dict(train_s=info['fit_seconds'], tracking_s=t_open + t_log + t_close, model_s=t_model))
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    return dict(**med, tracking_share=med['tracking_s']/med['train_s'], model_share=med['model_s']/med['train_s'], raw=rows)

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--reps', type=int, default=3, help='repetitions for (a), (b) and (c) (default 3)')
    ap.add_argument('--out', type=Path, default=HERE/'results'/'scale.json', help='where to write the results')
    ap.add_argument('--only', nargs='*', help='run only these parts: throughput default_training sweep tracking')
    a = ap.parse_args()
    res = dict(command=' '.join([Path(sys.executable).name, *sys.argv]), machine=dict(cpus=os.cpu_count(), python=platform.python_version(), platform=platform.platform()),
               when=time.strftime('%Y-%m-%d %H:%M:%S'))
    for name, fn in (('throughput', lambda: throughput(a.reps)), ('default_training', default_training), ('sweep', lambda: sweep_overhead(a.reps)), ('tracking', lambda: tracking_overhead(a.reps))):
        if a.only and name not in a.only: continue
        t0 = time.perf_counter(); res[name] = fn(); print(f"{name} ({time.perf_counter()-t0:.0f} s):", json.dumps({k: v for k, v in res[name].items() if k != 'raw'}, indent=1), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True); a.out.write_text(json.dumps(res, indent=2) + '\n')

if __name__ == '__main__': main()
