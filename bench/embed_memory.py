"""Benchmark: the embed stage's peak memory at a large scale, this embed notebook against an older one, paired.

Issue 13.1's memory goal: peak RSS of the process tree <= 4 GB at 500x the digits (898,500 rows); bench/growth.py
measured the embed stage's tree at 3.82 GiB = 4.10 GB there (2026-12-05), the pipeline's largest. This bench
isolates that stage: one scratch copy, the digits tiled `--scale` times, prepare, sweep and train once with
bench/growth.py's small-epoch params, then `dvc repro --force --single-item embed` alternately with the embed
notebook of git revision `--baseline` and with the working tree's (the library is the same: only the notebook
differs), `--reps` times each, the peak summed RSS of the whole tree sampled every 50 ms (testkit.peak_rss).
The probe is cut to `--probe-rows` (default 100): the peak is reached while Milvus Lite indexes the rows, before the
probe, and the default 1000 probes add ~15 min per run at 500x without touching it.
Run: `.venv/bin/python bench/embed_memory.py --scale 500 --reps 3 --baseline 634e2fe` (634e2fe: the notebook before its
copies were dropped; ~20 min here).
Results: bench/results/embed_memory.json and bench/README.md (growth section)."""
import argparse, json, os, platform, statistics, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent/'tests'))
sys.path.insert(0, str(HERE))
from conftest import copy_repo, set_params, sh, REPO
from testkit import tiled_digits, peak_rss
from growth import GROWTH, GIB

NOTEBOOK = 'nbs/stages/embed.ipynb'

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--scale', type=int, default=500, help='tilings of the digits (default 500: 898,500 rows)')
    ap.add_argument('--reps', type=int, default=1, help='runs of each notebook (default 1)')
    ap.add_argument('--baseline', default='HEAD', help="git revision whose embed notebook is the baseline (default HEAD)")
    ap.add_argument('--probe-rows', type=int, default=100, help='embed.probe_rows for these runs (default 100)')
    ap.add_argument('--out', type=Path, default=HERE/'results'/'embed_memory.json', help='where to write the results')
    a = ap.parse_args()
    old = subprocess.run(['git', 'show', f'{a.baseline}:{NOTEBOOK}'], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    new = (REPO/NOTEBOOK).read_text()
    res = dict(command=' '.join([Path(sys.executable).name, *sys.argv]), when=time.strftime('%Y-%m-%d %H:%M:%S'),
               scale=a.scale, baseline=a.baseline, probe_rows=a.probe_rows,
               machine=dict(cpus=os.cpu_count(), python=platform.python_version(), load_average_start=os.getloadavg()),
               runs={'baseline': [], 'new': []})
    with tempfile.TemporaryDirectory(prefix=f'embedmem{a.scale}-') as d:
        root = copy_repo(Path(d)/'repo')
        src, n = tiled_digits(root, a.scale)
        set_params(root, prepare={'source': src}, embed={'probe_rows': a.probe_rows}, **GROWTH)
        res['rows'] = n
        for s in ('prepare', 'sweep', 'train'):
            t0 = time.perf_counter()
            sh(['dvc', 'repro', '--single-item', s], root, timeout=7200)
            print(f'{a.scale}x {s}: {time.perf_counter() - t0:.0f} s', flush=True)
        for rep in range(a.reps):
            for which in (['baseline', 'new'] if rep % 2 == 0 else ['new', 'baseline']):
                (root/NOTEBOOK).write_text(old if which == 'baseline' else new)
                rc, secs, peak, log = peak_rss(['dvc', 'repro', '--force', '--single-item', 'embed'], root, timeout=7200)
                if rc != 0: raise RuntimeError(f'embed ({which}) failed ({rc}):\n{log[-3000:]}')
                res['runs'][which].append(dict(seconds=secs, peak_bytes=peak, load_average=os.getloadavg()))
                print(f'{a.scale}x embed, {which}: {secs:.0f} s, peak {peak/GIB:.2f} GiB ({peak/1e9:.2f} GB)', flush=True)
    for which, runs in res['runs'].items():
        peaks = [r['peak_bytes'] for r in runs]
        res[which] = dict(peak_gib_median=statistics.median(peaks)/GIB, peak_gb_median=statistics.median(peaks)/1e9,
                          peak_gib_min=min(peaks)/GIB, peak_gib_max=max(peaks)/GIB)
    res['machine']['load_average_end'] = os.getloadavg()
    a.out.write_text(json.dumps(res, indent=1))
    print(f"peak, median: baseline {res['baseline']['peak_gb_median']:.2f} GB, new {res['new']['peak_gb_median']:.2f} GB "
          f"(goal <= 4 GB); wrote {a.out}")

if __name__ == '__main__': main()
