"""Benchmark: the default pipeline at 1x, 10x, 50x (and 500x) the digits (issue 13.1's growth table).

Goal as the issue states it: the default pipeline runs at 1x, 10x, 50x and 500x digits (~900k rows) with peak memory
bounded (goal <= 4 GB for the process tree at 500x) and every stage's time growing at most linearly.
For each scale and repetition: a fresh scratch copy of the repo (tests' helpers), the digits tiled `scale` times into
data/raw/digitsN.csv (ids unique), small epochs (GROWTH params below: 1 epoch, a 2-trial sweep), then every stage in
DVC's order through `dvc repro --single-item <stage>` (DVC + `mlwb stage` + a fresh papermill kernel: the real path),
each one's wall time and the peak RSS of its whole process tree (sampled every 50 ms: DVC, the kernel, Ray, Milvus
Lite). The scales run in rounds (one repetition of each, then the next). Reported per stage: median [min, max] seconds, seconds per 1k rows, peak GiB. Results: bench/results/growth.json
Run: `.venv/bin/python bench/growth.py --scales 1 10 50 --reps 3 3 1` (about 30 min here), add `500 --reps ... 1`."""
import argparse, json, os, platform, statistics, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent/'tests'))
from conftest import copy_repo, clean_env, set_params, SMALL   # the same scratch-copy helpers as the tests
from testkit import tiled_digits, peak_rss   # shared with tests/test_scale_pipeline.py

STAGES = ['prepare', 'sweep', 'train', 'evaluate', 'embed', 'gate', 'monitor']
# small epochs: the shape of the default pipeline (sweep -> train with the sweep's best), one epoch each
GROWTH = {'train': {**SMALL['train'], 'epochs': 1},
          'sweep': {**SMALL['sweep'], 'n_trials': 2, 'epochs': 1, 'startup_trials': 2, 'warmup_epochs': 1}}
GIB = 2**30

def run_once(scale:int, stages=STAGES) -> dict:
    "One pipeline at `scale` in a fresh copy: per stage seconds and peak bytes."
    with tempfile.TemporaryDirectory(prefix=f'growth{scale}-') as d:
        root = copy_repo(Path(d)/'repo')
        src, n = tiled_digits(root, scale)
        set_params(root, prepare={'source': src}, **GROWTH)
        out = dict(rows=n, stages={}, load_average=os.getloadavg())
        for s in stages:
            rc, secs, peak, log = peak_rss(['dvc', 'repro', '--single-item', s], root)
            if rc != 0: raise RuntimeError(f'{s} at {scale}x failed ({rc}):\n{log[-3000:]}')
            out['stages'][s] = dict(seconds=secs, peak_bytes=peak)
            print(f'  {scale}x {s}: {secs:.1f} s, peak {peak/GIB:.2f} GiB', flush=True)
        out['embedded'] = json.loads((root/'metrics'/'embed.json').read_text())['count']
        out['wall_s'] = sum(v['seconds'] for v in out['stages'].values())
        return out

def summary(runs:list) -> dict:
    "Median [min, max] seconds, seconds per 1k rows and the largest peak per stage over the repetitions."
    n, out = runs[0]['rows'], {}
    for s in runs[0]['stages']:
        secs = [r['stages'][s]['seconds'] for r in runs]
        out[s] = dict(median_s=statistics.median(secs), min_s=min(secs), max_s=max(secs),
                      s_per_1k_rows=statistics.median(secs)/(n/1000), peak_gib=max(r['stages'][s]['peak_bytes'] for r in runs)/GIB)
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--scales', type=int, nargs='+', default=[1, 10, 50], help='tilings of the digits (default 1 10 50)')
    ap.add_argument('--reps', type=int, nargs='+', default=[3, 3, 1], help='repetitions per scale (default 3 3 1)')
    ap.add_argument('--stages', nargs='*', default=STAGES, help='stages to run, in order (default: all seven)')
    ap.add_argument('--out', type=Path, default=HERE/'results'/'growth.json', help='where to write the results')
    ap.add_argument('--show', type=Path, nargs='+', help='print the table of these results files (merged), run nothing')
    a = ap.parse_args()
    if a.show:
        res = json.loads(a.show[0].read_text())
        for f in a.show[1:]: res['scales'].update(json.loads(f.read_text())['scales'])
        return report(res, a.stages)
    reps = (a.reps + a.reps[-1:]*len(a.scales))[:len(a.scales)]
    res = dict(command=' '.join([Path(sys.executable).name, *sys.argv]), when=time.strftime('%Y-%m-%d %H:%M:%S'),
               goal='every stage at most linear in rows; peak RSS of the process tree <= 4 GB at 500x',
               params=GROWTH, machine=dict(cpus=os.cpu_count(), python=platform.python_version(),
                                           load_average_before=os.getloadavg()), scales={})
    runs = {scale: [] for scale in a.scales}
    for rep in range(max(reps)):   # rounds over the scales: every scale has a figure early, and the load is shared
        for scale, r in zip(a.scales, reps):
            if rep >= r: continue
            runs[scale].append(run_once(scale, a.stages))
            rs = runs[scale]
            res['scales'][str(scale)] = dict(rows=rs[0]['rows'], reps=len(rs), summary=summary(rs), raw=rs)
            res['machine']['load_average_after'] = os.getloadavg()
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(res, indent=1))   # after every run: a long bench keeps what it measured
    report(res, a.stages)

def marginal(res:dict, stage:str) -> list: # seconds per 1k more rows from each scale to the next
    "The growth between consecutive scales: (median seconds at b - at a) / (rows at b - at a) * 1000."
    sc = sorted(res['scales'].values(), key=lambda v: v['rows'])
    return [1000*(b['summary'][stage]['median_s'] - a['summary'][stage]['median_s'])/(b['rows'] - a['rows'])
            for a, b in zip(sc, sc[1:])]

def report(res:dict, stages=STAGES):
    "Print the growth table: per scale median seconds (seconds per 1k rows) and peak GiB; then the marginal growth."
    print(f"{'stage':<10}" + ''.join(f"{s + 'x s (s/1k)':>22}{'GiB':>6}" for s in res['scales']) + '   marginal s/1k rows')
    for s in stages:
        print(f'{s:<10}' + ''.join(f"{v['summary'][s]['median_s']:>12.1f} ({v['summary'][s]['s_per_1k_rows']:6.3f})"
                                   f"{v['summary'][s]['peak_gib']:>6.2f}" for v in res['scales'].values())
              + '   ' + ' '.join(f'{m:.3f}' for m in marginal(res, s)))

if __name__ == '__main__':
    main()
