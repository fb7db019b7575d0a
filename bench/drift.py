"""Benchmark: false-alarm and detection rates of the drift monitor, and detection against strength.

Self-contained (no pipeline state needed): prepares digits with params.yaml's prepare section, trains the model of
params.yaml's train section in-process, stores its embeddings in a scratch Milvus Lite directory, calibrates the
monitor's reference exactly as the monitor stage does (`monitor.fit_reference`), then checks simulated batches
(`batches.simulate_batch`, drawn from the held-out test split) with `monitor.check_batch` and params.yaml's
monitor section: `--seeds` batches per scenario at its default strength, and the same over a grid of strengths.

Run: `.venv/bin/python bench/drift.py --seeds 20` (results: bench/results/drift.json and drift_curve.png;
summarised in bench/README.md by hand). `--quick` trains a smaller model for a fast check (used by the tests)."""
import argparse, json, platform, sys, tempfile, time
from pathlib import Path
import numpy as np, pandas as pd, yaml

HERE = Path(__file__).resolve().parent
CURVE = {'noise': [0.0025, 0.005, 0.01, 0.02, 0.05, 0.1], 'shift': [0.01, 0.02, 0.03, 0.05, 0.1, 1.0], 'rotate': [0.1, 0.2, 0.5, 1, 5, 20],
         'prior': [0.2, 0.25, 0.3, 0.35, 0.4, 0.5],   # 0.2: the two favoured classes' natural share (no shift)
         'novel': [0.01, 0.02, 0.05, 0.1, 0.2, 0.3]}

def setup(params: dict, quick: bool, milvus_dir: str):
    from mlops_workbench.config import load_config
    from mlops_workbench.data import load_digits_frame, split_dataset, to_arrays
    from mlops_workbench.train import build_model, train_model, seed_everything, embed
    from mlops_workbench import vectors, monitor
    prep, tr = params['prepare'], dict(params['train'])
    if quick: tr.update(hidden=[32], epochs=5, lr=0.01)
    df = load_digits_frame(); splits = split_dataset(df, prep['test_size'], prep['val_size'], prep['seed'])
    meta = dict(features=[c for c in df.columns if c.startswith('px_')], classes=list(range(10)), image_shape=[8, 8])
    (Xtr, ytr), (Xva, yva) = to_arrays(splits['train'], meta), to_arrays(splits['val'], meta)
    seed_everything(tr['seed'], 1)
    net = build_model(tr['model'], 64, 10, tr['hidden'], tr['dropout'], [8, 8])
    train_model(net, Xtr, ytr, Xva, yva, epochs=tr['epochs'], batch_size=tr['batch_size'], lr=tr['lr'], weight_decay=tr['weight_decay'],
                seed=tr['seed'], device='cpu', progress=False)
    client = vectors.connect(load_config(milvus_dir, env={})); name = 'bench_v1'
    allrows = pd.concat([v.assign(split=k) for k, v in splits.items()], ignore_index=True)
    vectors.create_collection(client, name, net.embedding_dim)
    vectors.insert_embeddings(client, name, embed(net, to_arrays(allrows, meta)[0]), dict(id=allrows['id'], label=allrows['label'],
                              split=allrows['split'], prediction=0, model_version=1, run_id='bench', data_fingerprint='bench'), progress=False)
    mp = params['monitor']
    ref = monitor.fit_reference(net, splits, meta, client, name, mp['k'], mp['batch_size'])
    return net, client, name, ref, splits, meta

def rate(net, client, name, ref, splits, meta, mp, scenario, strength, seeds, size, seed0=1000):
    from mlops_workbench.batches import simulate_batch
    from mlops_workbench.monitor import check_batch, FAMILIES
    alarms, fam = 0, {f: 0 for f in FAMILIES}
    for s in range(seeds):
        rep = check_batch(ref, simulate_batch(splits['test'], meta, scenario, strength, seed0 + s, size), net, client, name,
                          mp['alpha'], mp['psi_bins'], mp['psi_min'], mp['batch_size'])
        alarms += rep['drift']
        for f in rep['families']: fam[f] += 1
    return dict(scenario=scenario, strength=strength, seeds=seeds, alarms=alarms, rate=alarms/seeds, by_family=fam)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seeds', type=int, default=20, help='batches per scenario and strength (default 20)')
    ap.add_argument('--size', type=int, default=200, help='rows per batch (default 200, as `mlwb simulate`)')
    ap.add_argument('--quick', action='store_true', help='small model (hidden [32], 5 epochs) for a fast check')
    ap.add_argument('--no-curve', action='store_true', help='only the default strengths')
    ap.add_argument('--out', type=Path, default=HERE/'results'/'drift.json')
    a = ap.parse_args(argv)
    from mlops_workbench.batches import SCENARIOS
    params = yaml.safe_load((HERE.parent/'params.yaml').read_text()); mp = params['monitor']
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        net, client, name, ref, splits, meta = setup(params, a.quick, d)
        t_setup = time.perf_counter() - t0
        defaults = {s: rate(net, client, name, ref, splits, meta, mp, s, v, a.seeds, a.size) for s, v in SCENARIOS.items()}
        for s, r in defaults.items(): print(f"{s:<7} strength {r['strength']:<5g} alarms {r['alarms']}/{r['seeds']}  {r['by_family']}", flush=True)
        curve = {} if a.no_curve else {s: [rate(net, client, name, ref, splits, meta, mp, s, v, a.seeds, a.size) for v in grid] for s, grid in CURVE.items()}
        client.drop_collection(name)
    out = dict(command=' '.join(['bench/drift.py', *(argv if argv is not None else sys.argv[1:])]), seeds=a.seeds, size=a.size, quick=a.quick,
               monitor=mp, machine=platform.platform(), setup_seconds=round(t_setup, 1), seconds=round(time.perf_counter() - t0, 1),
               false_alarm_rate=defaults['none']['rate'], detection_rate={s: r['rate'] for s, r in defaults.items() if s != 'none'},
               defaults=defaults, curve=curve)
    a.out.parent.mkdir(parents=True, exist_ok=True); a.out.write_text(json.dumps(out, indent=2) + '\n')
    if curve:
        import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(curve), figsize=(3*len(curve), 2.8), sharey=True)
        for ax, (s, rows) in zip(axes, curve.items()):
            ax.plot([r['strength'] for r in rows], [r['rate'] for r in rows], 'o-'); ax.axhline(0.95, color='k', ls=':', lw=1)
            ax.set(title=s, xlabel='strength', ylim=(-0.03, 1.03)); ax.grid(alpha=.3)
        axes[0].set_ylabel(f'detection rate ({a.seeds} seeds)'); fig.tight_layout(); fig.savefig(a.out.with_name('drift_curve.png'), dpi=100)
    print(json.dumps({k: out[k] for k in ('false_alarm_rate', 'detection_rate', 'seconds')}))

if __name__ == '__main__':
    main()
