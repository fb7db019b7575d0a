"""Benchmark: a whole pipeline run with the run's pools against the same run without them.

`--compare kernels` (the default): the kernel pool against every kernel started cold (below). `--compare ray`: the
run's shared Ray runtime (issue 13.4: the sweep and Ray Train join one runtime, started by the first of them) against
a private runtime per stage (`MLWB_RAY_RUN=0`, as before), with `train.backend: ray` so that two stages use Ray;
results in bench/results/pool-ray.json.

The kernel pool (mlops_workbench.kernels, nbs/05a_kernels.ipynb) forks each stage's kernel, from a run's second stage on,
from a server that imported torch, MLflow and Jupyter's kernel once. What it saves is fixed cost per stage, so this
measures where the team pays it: `mlwb run --force` (checks + `dvc repro --force`: every stage runs) in one scratch
copy, both ways, alternating which goes first in each repetition:
  pooled  `mlwb run --force`                      (the default)
  cold    `MLWB_KERNEL_POOL=0 mlwb run --force`   (every kernel a fresh `python -m ipykernel_launcher`)
Wall time, CPU time (the whole machine's busy time during the run, from /proc/stat: the pool server outlives the
stage that started it, so a process tree's rusage would miss it or count it in the next run; run this on a quiet
machine, `machine.load_average_*` records the load), and each stage's own time ("stage X done in N s"). Sizes: `--params small` (the tests' small params: 3 epochs, 4 trials) and `--params default`
(params.yaml as committed). Results: bench/results/pool.json (raw runs, medians, spreads) and bench/README.md.
Run: `.venv/bin/python bench/pool.py --params small,default --reps 3` (and `--compare ray`)."""
import argparse, json, os, platform, re, statistics, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent/'tests'))
from conftest import copy_repo, clean_env, sh, set_params, SMALL   # the same scratch-copy helpers as the tests
from testkit import machine_cpu, pool_servers

def run(root:Path, env:dict) -> dict:
    "One `mlwb run --force`: wall seconds, the machine's CPU seconds, each stage's time."
    m0, t0 = machine_cpu(), time.perf_counter()
    r = sh(['mlwb', 'run', '--force'], root, env=env, timeout=3600)
    wall = time.perf_counter() - t0
    deadline = time.time() + 15   # the pool server ends within a second of its run; its kernels before it
    while pool_servers() and time.time() < deadline: time.sleep(0.05)
    m1 = machine_cpu()
    stages = {m.group(1): float(m.group(2)) for m in re.finditer(r'^stage (\w+) done in ([\d.]+) s', r.stdout, re.M)}
    return dict(wall=wall, cpu=m1 - m0, stages=stages, cold_fallbacks=r.stderr.count('starting the kernel cold'))

def stats(xs:list) -> dict:
    return dict(median=statistics.median(xs), min=min(xs), max=max(xs), runs=xs)

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--reps', type=int, default=3, help='repetitions of each route and size (default 3)')
    ap.add_argument('--params', default='small,default', help='sizes: small (the tests\' params), default (params.yaml)')
    ap.add_argument('--compare', choices=('kernels', 'ray'), default='kernels',
                    help="kernels: pooled vs cold kernels; ray: the run's shared Ray runtime vs one per stage")
    ap.add_argument('--out', type=Path, help='where to write the results (default bench/results/pool.json, pool-ray.json)')
    a = ap.parse_args()
    a.out = a.out or HERE/'results'/('pool.json' if a.compare == 'kernels' else 'pool-ray.json')
    res = dict(command=' '.join([Path(sys.executable).name, *sys.argv]), compare=a.compare, reps=a.reps, when=time.strftime('%Y-%m-%d %H:%M:%S'),
               machine=dict(cpus=os.cpu_count(), python=platform.python_version(), platform=platform.platform(),
                            load_average_start=os.getloadavg()), sizes={})
    envs = ({'pooled': clean_env(), 'cold': clean_env(MLWB_KERNEL_POOL='0')} if a.compare == 'kernels' else
            {'shared': clean_env(), 'private': clean_env(MLWB_RAY_RUN='0')})   # the first is the new way, the second its baseline
    new, base = list(envs)
    for size in a.params.split(','):
        with tempfile.TemporaryDirectory() as d:
            root = copy_repo(Path(d)/'repo')
            if size == 'small': set_params(root, **SMALL)
            if a.compare == 'ray': set_params(root, train={'backend': 'ray'})
            sh(['mlwb', 'run'], root, timeout=3600)   # the first run: stores, the run-cache, the page cache warm
            runs = {k: [] for k in envs}
            for rep in range(a.reps):
                order = list(envs) if rep % 2 == 0 else list(envs)[::-1]
                for k in order:
                    runs[k].append(run(root, envs[k]))
                    print(f"{size} rep {rep+1} {k}: {runs[k][-1]['wall']:.1f} s wall, {runs[k][-1]['cpu']:.1f} s CPU", flush=True)
            out = {k: dict(wall=stats([r['wall'] for r in v]), cpu=stats([r['cpu'] for r in v]),
                           stages={s: stats([r['stages'][s] for r in v]) for s in v[0]['stages']},
                           cold_fallbacks=sum(r['cold_fallbacks'] for r in v)) for k, v in runs.items()}
            out['ratio_wall'] = out[new]['wall']['median'] / out[base]['wall']['median']
            out['ratio_cpu'] = out[new]['cpu']['median'] / out[base]['cpu']['median']
            res['sizes'][size] = out
    res['machine']['load_average_end'] = os.getloadavg()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    for size, out in res['sizes'].items():
        print(f"\n{size}, {base} -> {new}: wall {out[base]['wall']['median']:.1f} -> {out[new]['wall']['median']:.1f} s "
              f"(x{out['ratio_wall']:.2f}), CPU {out[base]['cpu']['median']:.1f} -> {out[new]['cpu']['median']:.1f} s "
              f"(x{out['ratio_cpu']:.2f})")
        for s in out[base]['stages']:
            c, p = out[base]['stages'][s], out[new]['stages'][s]
            print(f"  {s:9s} {c['median']:6.1f} ({c['min']:.1f}-{c['max']:.1f})  ->  {p['median']:6.1f} ({p['min']:.1f}-{p['max']:.1f}) s")
    print(f"wrote {a.out}")

if __name__ == '__main__': main()
