"""Benchmark: the stage machinery's overhead on every stage, against the same code run cold in a plain process.

Issue 13.3's goal: a stage through the machinery costs at most 1 s more than the same code run cold in a plain
Python process (imports included on both sides). In one scratch copy of the repo, after one full `dvc repro`
(default params.yaml), each repetition runs, for every stage, both ways, alternating which goes first:
  machinery  `dvc repro --force --single-item <stage>`: DVC + `mlwb stage` + a fresh papermill kernel + the report
  plain      `python -c <the stage notebook's code cells with params.yaml's values>` in a fresh process
Both write the same outputs (the model registry reuses the version). With `--baseline DIR` (a folder holding an older
`mlops_workbench` package, e.g. `git archive <commit> mlops_workbench | tar -x -C DIR`), each repetition also runs the
machinery with that package's runner (PYTHONPATH=DIR; the kernel still imports the scratch copy's package), in rotating
order with the two others: a paired before/after of the runner. With `--pool`, also the machinery with a warm kernel
pool (mlops_workbench.kernels) held by this process: every stage's kernel a fork of it, as a run's second and later
stages get it under `mlwb run`; CPU is then the machine's busy time (/proc/stat) for every way (run it quiet). Also measured, paired per repetition:
no-op `dvc repro` here vs DVC's own no-op in an empty DVC repo (goal <= 1.2x), and `mlwb --help` vs `python -c pass`
(goal <= 0.3 s). Results: bench/results/stages.json (raw runs, medians, spreads) and bench/README.md (by hand).
Run: `make bench` or `.venv/bin/python bench/stages.py --reps 3`."""
import argparse, contextlib, json, os, platform, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent/'tests'))
from conftest import copy_repo, clean_env, sh   # the same scratch-copy helpers as the tests
from testkit import machine_cpu

STAGES = ['prepare', 'sweep', 'train', 'evaluate', 'embed', 'gate', 'monitor']

PLAIN = r'''
import json, sys, yaml
from mlops_workbench.stages import notebook_parameters
s = sys.argv[1]
nb = json.load(open(f'nbs/stages/{s}.ipynb'))
ns = dict(notebook_parameters(f'nbs/stages/{s}.ipynb'))
ns.update(yaml.safe_load(open('params.yaml'))[s])
for c in nb['cells']:
    if c['cell_type'] == 'code' and 'parameters' not in c.get('metadata', {}).get('tags', []):
        exec(compile(''.join(c['source']), f'{s}.ipynb', 'exec'), ns)
'''

def timed(cmd, cwd, **kw) -> float:
    "Wall seconds of a command that must succeed."
    t0 = time.perf_counter()
    sh(cmd, cwd, **kw)
    return time.perf_counter() - t0

def timed_cpu(cmd, cwd, machine=False, **kw) -> tuple:
    """Wall seconds and CPU seconds of a command that must succeed: user + system of the waited-for process tree, or
    with `machine` the whole machine's busy time (a pooled kernel is the pool server's child, not the command's)."""
    r0, m0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), machine_cpu(), time.perf_counter()
    sh(cmd, cwd, **kw)
    r1, m1, wall = resource.getrusage(resource.RUSAGE_CHILDREN), machine_cpu(), time.perf_counter() - t0
    return wall, (m1 - m0) if machine else (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)

def stats(xs:list) -> dict:
    return dict(median=statistics.median(xs), min=min(xs), max=max(xs), runs=xs)

def empty_dvc_repo(d:Path) -> Path:
    "A git + DVC repo with one trivial stage, already run: DVC's own no-op `dvc repro` (an empty dvc.yaml is an error)."
    r = d/'empty'
    r.mkdir()
    for cmd in (['git', 'init', '-q'], ['dvc', 'init', '-q']): sh(cmd, r)
    (r/'dvc.yaml').write_text("stages:\n  one:\n    cmd: echo one > out.txt\n    outs: [out.txt]\n")
    sh(['dvc', 'repro'], r)
    return r

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--reps', type=int, default=3, help='repetitions (default 3)')
    ap.add_argument('--stages', nargs='*', default=STAGES, help=f'stages to time (default: all: {" ".join(STAGES)})')
    ap.add_argument('--baseline', type=Path, help='a folder holding an older mlops_workbench package: also time its runner')
    ap.add_argument('--pool', action='store_true', help='also time the machinery with a warm kernel pool (every stage a '
                    'fork of it, as the second and later stages of `mlwb run`); CPU then from /proc/stat for every way')
    ap.add_argument('--out', type=Path, default=HERE/'results'/'stages.json', help='where to write the results')
    a = ap.parse_args()
    res = dict(command=' '.join([Path(sys.executable).name, *sys.argv]), reps=a.reps, when=time.strftime('%Y-%m-%d %H:%M:%S'),
               machine=dict(cpus=os.cpu_count(), python=platform.python_version(), platform=platform.platform(),
                            load_average=os.getloadavg()))
    bin_ = Path(sys.executable).parent
    runs = {s: dict(machinery=[], plain=[], **({'baseline': []} if a.baseline else {}),
                    **({'pooled': []} if a.pool else {})) for s in a.stages}
    cpus = {s: {w: [] for w in runs[s]} for s in a.stages}   # CPU seconds: steadier than wall time on a shared machine
    if a.baseline: res['baseline'] = str(a.baseline)
    noop, noop_empty, helps, passes = [], [], [], []
    with tempfile.TemporaryDirectory() as d:
        root, empty = copy_repo(Path(d)/'repo'), empty_dvc_repo(Path(d))
        res['first_repro_s'] = timed(['dvc', 'repro'], root, timeout=3600)
        pool_env, pool = clean_env(), contextlib.ExitStack()
        if a.pool:   # one pool for the whole bench, owned by this process, its first kernel counted as used
            from mlops_workbench.kernels import kernel_pool, USED
            folder = pool.enter_context(kernel_pool(pool_env))
            (folder/USED).write_text('.')
            res['pool_start_s'] = timed(['dvc', 'repro', '--force', '--single-item', 'monitor'], root, env=pool_env)
        for rep in range(a.reps):
            for s in a.stages:
                repro = ['dvc', 'repro', '--force', '--single-item', s]
                ways = [('machinery', repro, clean_env()), ('plain', [sys.executable, '-c', PLAIN, s], clean_env())]
                if a.baseline: ways.append(('baseline', repro, clean_env(PYTHONPATH=str(a.baseline.resolve()))))
                if a.pool: ways.append(('pooled', repro, pool_env))
                k = rep % len(ways)
                for way, cmd, env in (ways[k:] + ways[:k] if rep % 2 == 0 else (ways[k:] + ways[:k])[::-1]):
                    wall, cpu = timed_cpu(cmd, root, machine=a.pool, timeout=3600, env=env)
                    runs[s][way].append(wall)
                    cpus[s][way].append(cpu)
                print(f"rep {rep+1}/{a.reps} {s}: " + ', '.join(f"{w} {v[-1]:.2f}s" for w, v in runs[s].items()), flush=True)
            # settle first: the plain runs rewrite the outputs behind DVC's back, so the next repro is not a no-op
            timed(['dvc', 'repro'], root, timeout=3600)
            for r, out in ((root, noop), (empty, noop_empty)): out.append(timed(['dvc', 'repro'], r))
            helps.append(timed([str(bin_/'mlwb'), '--help'], root))
            passes.append(timed([sys.executable, '-c', 'pass'], root))
        pool.close()
    res['stages'] = {s: dict(machinery_s=stats(v['machinery']), plain_cold_s=stats(v['plain']),
                             overhead_s=stats([m - p for m, p in zip(v['machinery'], v['plain'])]),
                             cpu_s={w: stats(c) for w, c in cpus[s].items()},
                             overhead_cpu_s=stats([m - p for m, p in zip(cpus[s]['machinery'], cpus[s]['plain'])]),
                             **({'baseline_s': stats(v['baseline']), 'baseline_overhead_s':
                                 stats([b - p for b, p in zip(v['baseline'], v['plain'])])} if a.baseline else {}),
                             **({'pooled_s': stats(v['pooled']), 'pooled_overhead_s':
                                 stats([b - p for b, p in zip(v['pooled'], v['plain'])]), 'pooled_overhead_cpu_s':
                                 stats([m - p for m, p in zip(cpus[s]['pooled'], cpus[s]['plain'])])} if a.pool else {}))
                     for s, v in runs.items()}
    res['noop_repro'] = dict(project_s=stats(noop), empty_repo_s=stats(noop_empty),
                             ratio=stats([p/e for p, e in zip(noop, noop_empty)]), goal='<= 1.2x')
    res['help'] = dict(mlwb_help_s=stats(helps), python_pass_s=stats(passes), goal='mlwb --help <= 0.3 s')
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + '\n')
    print(f"{'stage':<10}{'machinery':>11}{'plain cold':>12}{'overhead':>10}{'spread':>18}   (median of {a.reps}, s; goal <= 1 s)")
    for s, v in res['stages'].items():
        o = v['overhead_s']
        b, oc = v.get('baseline_overhead_s'), v['overhead_cpu_s']
        print(f"{s:<10}{v['machinery_s']['median']:>11.2f}{v['plain_cold_s']['median']:>12.2f}{o['median']:>10.2f}"
              f"{'[%.2f, %.2f]' % (o['min'], o['max']):>18}   CPU overhead {oc['median']:.2f}" + (f"   baseline overhead {b['median']:.2f} "
              f"[{b['min']:.2f}, {b['max']:.2f}]" if b else '') + (f"   pooled {v['pooled_s']['median']:.2f}, overhead "
              f"{v['pooled_overhead_s']['median']:.2f} [{v['pooled_overhead_s']['min']:.2f}, {v['pooled_overhead_s']['max']:.2f}]"
              f", CPU overhead {v['pooled_overhead_cpu_s']['median']:.2f}" if a.pool else ''))
    n = res['noop_repro']
    print(f"no-op dvc repro {n['project_s']['median']:.2f}s vs empty repo {n['empty_repo_s']['median']:.2f}s "
          f"(ratio {n['ratio']['median']:.2f}, goal <= 1.2); mlwb --help {res['help']['mlwb_help_s']['median']:.2f}s "
          f"(python -c pass {res['help']['python_pass_s']['median']:.2f}s); first full repro {res['first_repro_s']:.1f}s")

if __name__ == '__main__': main()
