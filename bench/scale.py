"""Benchmark: the scale-out path (issue 3's goals).

  (a) training throughput: samples/s of the workbench's training path (`distributed.fit`, in process and on a
      1-worker Ray Train group) vs a plain torch loop with the same model, data, batches and threads;
      plus the wall time of the default training (digits, 20 epochs) in process, on 1 and on 2 Ray Train workers.
  (b) sweep orchestration: 16 trials of a 1-second objective at concurrency 2 (after Ray is up): wall time vs
      the ideal 16 x 1 s / 2, per-trial overhead and parallel efficiency, deterministic and as-they-come modes,
      with MLflow tracking (parent + 16 children on SQLite) and without.
  (c) tracking overhead: the train stage's MLflow work at the default size (params.yaml train.*, digits), part by part
      (run + params, metrics, model logging, registration, close) as a share of training time, paired with the same
      training untracked.
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

class _Timers:
    "Wrap MLflow's own steps of model logging in timers: seconds per step while the block runs."
    STEPS = (('save', 'mlflow.pyfunc', 'save_model'), ('validate', 'mlflow.models.utils', '_validate_serving_input'),
             ('copy', 'mlflow.tracking.client', 'MlflowClient.log_model_artifacts'))
    def __init__(self): self.s, self.undo = dict.fromkeys((k for k, *_ in self.STEPS), 0.0), []
    def __enter__(self):
        import importlib
        for key, mod, attr in self.STEPS:
            owner = importlib.import_module(mod)
            *path, name = attr.split('.')
            for a in path: owner = getattr(owner, a)
            orig = getattr(owner, name)
            def timed(*a, _orig=orig, _key=key, **kw):
                t0 = time.perf_counter()
                try: return _orig(*a, **kw)
                finally: self.s[_key] += time.perf_counter() - t0
            setattr(owner, name, timed); self.undo.append((owner, name, orig))
        return self
    def __exit__(self, *exc):
        for owner, name, orig in reversed(self.undo): setattr(owner, name, orig)

def _default_train():
    "The default train stage's spec (params.yaml train.*) and data: digits split as `prepare` sizes it (1257 train rows)."
    import yaml
    from sklearn.datasets import load_digits
    from mlops_workbench.train import TrainSpec
    p = yaml.safe_load((HERE.parent/'params.yaml').read_text())['train']
    spec = TrainSpec.from_params({**p, 'device': 'cpu'})
    X, y = load_digits(return_X_y=True)
    X, y = X.astype('float32'), y.astype('int64')
    return spec, (X[:1257], y[:1257], X[1257:1437], y[1257:1437])

def tracking_overhead(reps):
    """(c) The train stage's MLflow work at the default size, timed part by part, paired with the same training
    untracked (alternating which goes first): run creation + params, metrics, model logging (MLflow's save, its
    serving-input check, the artifact copy, the rest), registration, the history figure, close. A first (cold) run
    is reported apart: it pays MLflow's lazy imports and creates the registered model."""
    import inspect, matplotlib, pandas as pd
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from mlops_workbench.config import load_config
    from mlops_workbench.distributed import fit
    from mlops_workbench.evaluate import history_figure
    from mlops_workbench.tracking import stage_run, log_metrics, log_figure, ensure_store
    import mlops_workbench.registry as registry
    spec, (Xtr, ytr, Xva, yva) = _default_train()
    feats, classes, rows = [f'x{i}' for i in range(Xtr.shape[1])], list(range(10)), []
    def untracked():
        t0 = time.perf_counter()
        _, _, info = fit(spec, Xtr, ytr, Xva, yva, 10, backend='local', progress=False)
        return dict(untracked_wall_s=time.perf_counter() - t0, untracked_fit_s=info['fit_seconds'])
    def tracked(cfg, rep):
        r, t = {}, time.perf_counter()
        def lap(key):
            nonlocal t
            now = time.perf_counter(); r[key] = r.get(key, 0.0) + now - t; t = now
        params = {**spec.asdict(), 'backend': 'local', 'num_workers': 1, 'bench_rep': rep}   # a new version each time
        cm = stage_run('train', params, f'{rep:064x}', cfg=cfg, tags={'mlwb.hardware': 'bench'})
        client, rid = cm.__enter__(); lap('run_s')
        net, hist, info = fit(spec, Xtr, ytr, Xva, yva, 10, backend='local', progress=False)
        r['fit_s'] = info['fit_seconds']; lap('train_wall_s')
        if 'tags' in inspect.signature(log_metrics).parameters:   # as this commit's train stage logs them
            log_metrics(client, rid, [*hist, {'epoch': 0, 'train_seconds': info['fit_seconds']}], tags={'mlwb.device': 'cpu'})
        else:
            log_metrics(client, rid, hist); log_metrics(client, rid, {'train_seconds': info['fit_seconds']})
            client.set_tag(rid, 'mlwb.device', 'cpu')
        lap('metrics_s')
        orig_log = registry.log_torch_model
        def timed_log(*a, **kw):
            lap('registration_s')
            with _Timers() as tm: out = orig_log(*a, **kw)
            lap('model_s'); r.update({f'model_{k}_s': v for k, v in tm.s.items()})
            return out
        registry.log_torch_model = timed_log
        try: v = registry.register_model(net, Xtr[:5], rid, cfg, features=feats, classes=classes)
        finally: registry.log_torch_model = orig_log
        lap('registration_s'); assert v.run_id == rid, 'the bench must register a new version each time'
        fig = history_figure(pd.DataFrame(hist)); log_figure(fig, 'plots/train_history.png', rid, cfg)
        plt.close(fig); lap('figure_s')
        cm.__exit__(None, None, None); lap('close_s')
        r['model_other_s'] = r['model_s'] - sum(r.get(f'model_{k}_s', 0.0) for k, *_ in _Timers.STEPS)
        r['tracking_s'] = r['run_s'] + r['metrics_s'] + r['close_s']
        r['tracking_with_model_s'] = r['tracking_s'] + r['model_s'] + r['registration_s'] + r['figure_s']
        return r
    with tempfile.TemporaryDirectory() as d:
        cfg = load_config(d, env={}); ensure_store(cfg)
        t0 = time.perf_counter(); cold = tracked(cfg, -1); cold['first_run_wall_s'] = time.perf_counter() - t0
        order = [untracked, tracked]
        for rep in range(reps):
            row = {}
            for f in order: row.update(f() if f is untracked else f(cfg, rep))
            row['untracked_first'] = order[0] is untracked
            rows.append(row); order = order[::-1]
    keys = [k for k in rows[0] if k.endswith('_s')]
    stat = {k: dict(median=statistics.median(r[k] for r in rows), min=min(r[k] for r in rows),
                    max=max(r[k] for r in rows)) for k in keys}
    share = [r['tracking_s']/r['fit_s'] for r in rows]
    share_all = [r['tracking_with_model_s']/r['fit_s'] for r in rows]
    ratio = [r['untracked_fit_s']/r['fit_s'] for r in rows]
    return dict(rows=len(Xtr), epochs=spec.epochs, stat=stat,
                tracking_share=dict(median=statistics.median(share), min=min(share), max=max(share)),
                tracking_with_model_share=dict(median=statistics.median(share_all), min=min(share_all), max=max(share_all)),
                tracked_vs_untracked_fit=dict(median=statistics.median(ratio), min=min(ratio), max=max(ratio)),
                goal='tracking <= 2% of training time on the default train stage, model logging included',
                cold_first_run=cold, raw=rows)

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
