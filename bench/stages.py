"""Benchmark: per-stage wall time of the default pipeline, and the stage machinery's overhead.

Two ways of running the very same code, each in a scratch copy of the repo with the default params.yaml:
  machinery  `dvc repro --force --single-item <stage>`: DVC + the stage runner + a papermill kernel per stage
  in-process the stage notebooks' own code cells, exec'd in order in one Python process (imports paid once)
Each is repeated (--reps); medians are reported. Run: `make bench` (or `.venv/bin/python bench/stages.py --reps 3`).
Results go to bench/results/stages.json and are summarised in bench/README.md by hand."""
import argparse, json, os, platform, statistics, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent/'tests'))
from conftest import copy_repo, clean_env, sh   # the same scratch-copy helpers as the tests

STAGES = ['prepare', 'sweep', 'train', 'evaluate', 'embed']

INPROC = r'''
import json, sys, time, yaml
from mlops_workbench.stages import notebook_parameters
stages, reps = json.loads(sys.argv[1]), int(sys.argv[2])
params = yaml.safe_load(open('params.yaml'))
out = {s: [] for s in stages}; first = {}
for rep in range(reps + 1):                      # rep 0 pays the imports (cold), the rest are warm
    for s in stages:
        nb = json.load(open(f'nbs/stages/{s}.ipynb'))
        ns = dict(notebook_parameters(f'nbs/stages/{s}.ipynb')); ns.update(params[s])
        code = [''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code' and 'parameters' not in c.get('metadata', {}).get('tags', [])]
        t0 = time.perf_counter()
        for c in code: exec(compile(c, f'{s}.ipynb', 'exec'), ns)
        dt = time.perf_counter() - t0
        (out[s].append(dt) if rep else first.__setitem__(s, dt))
        import matplotlib.pyplot as plt; plt.close('all')
print(json.dumps(dict(warm=out, cold=first)))
'''

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--reps', type=int, default=3, help='repetitions per stage (default 3)')
    ap.add_argument('--out', type=Path, default=HERE/'results'/'stages.json', help='where to write the results')
    a = ap.parse_args()
    res = dict(command=' '.join([Path(sys.executable).name, *sys.argv]), machine=dict(cpus=os.cpu_count(), python=platform.python_version(), platform=platform.platform()),
               reps=a.reps, when=time.strftime('%Y-%m-%d %H:%M:%S'))
    with tempfile.TemporaryDirectory() as d:
        root = copy_repo(Path(d)/'machinery')
        t0 = time.perf_counter(); sh(['dvc', 'repro'], root); res['first_repro_s'] = time.perf_counter() - t0
        t0 = time.perf_counter(); sh(['dvc', 'repro'], root); res['noop_repro_s'] = time.perf_counter() - t0
        mach = {s: [] for s in STAGES}
        for _ in range(a.reps):
            for s in STAGES:
                t0 = time.perf_counter(); sh(['dvc', 'repro', '--force', '--single-item', s], root); mach[s].append(time.perf_counter() - t0)
        root2 = copy_repo(Path(d)/'inprocess')
        r = sh([sys.executable, '-c', INPROC, json.dumps(STAGES), str(a.reps)], root2)
        inproc = json.loads(r.stdout.strip().splitlines()[-1])
    res['stages'] = {s: dict(machinery_s=statistics.median(mach[s]), in_process_warm_s=statistics.median(inproc['warm'][s]),
                             in_process_cold_s=inproc['cold'][s], overhead_s=statistics.median(mach[s]) - statistics.median(inproc['warm'][s]),
                             machinery_runs=mach[s], in_process_runs=inproc['warm'][s]) for s in STAGES}
    tot_m = sum(v['machinery_s'] for v in res['stages'].values()); tot_w = sum(v['in_process_warm_s'] for v in res['stages'].values())
    res['total'] = dict(machinery_s=tot_m, in_process_warm_s=tot_w, in_process_cold_s=sum(inproc['cold'].values()), overhead_s=tot_m - tot_w,
                        overhead_per_stage_s=(tot_m - tot_w)/len(STAGES))
    a.out.parent.mkdir(parents=True, exist_ok=True); a.out.write_text(json.dumps(res, indent=2) + '\n')
    print(f"{'stage':<10}{'dvc+papermill':>15}{'in-process':>12}{'overhead':>10}   (median of {a.reps}, seconds)")
    for s, v in res['stages'].items(): print(f"{s:<10}{v['machinery_s']:>15.2f}{v['in_process_warm_s']:>12.2f}{v['overhead_s']:>10.2f}")
    t = res['total']; print(f"{'total':<10}{t['machinery_s']:>15.2f}{t['in_process_warm_s']:>12.2f}{t['overhead_s']:>10.2f}")
    print(f"first full repro {res['first_repro_s']:.1f}s, no-op repro {res['noop_repro_s']:.2f}s, in-process cold (imports) {t['in_process_cold_s']:.1f}s")

if __name__ == '__main__': main()
