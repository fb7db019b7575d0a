"""What each test file costs: wall seconds and the machine's busy CPU seconds, summed per file from the JSON lines that
tests/conftest.py writes when MLWB_TEST_CPU_LOG is set (one test at a time, so that the machine's CPU is the test's).

    MLWB_TEST_CPU_LOG=_build/test-cpu.jsonl .venv/bin/python tools/pytest_shards.py --serial -q
    .venv/bin/python tools/test_costs.py _build/test-cpu.jsonl [--tests 20]
"""
import argparse, collections, json, sys
from pathlib import Path

def per_file(rows:list) -> dict:
    "File -> {'tests', 'wall', 'cpu'} summed over its tests."
    out = collections.defaultdict(lambda: {'tests': 0, 'wall': 0.0, 'cpu': 0.0})
    for r in rows:
        f = out[r['test'].split('::')[0]]
        f['tests'] += 1; f['wall'] += r['wall']; f['cpu'] += r['cpu']
    return dict(out)

def table(rows:list, key:str, n:int|None=None) -> str:
    "A Markdown table of `rows` (name, tests, wall, cpu) sorted by CPU, with the totals."
    wall, cpu = sum(r['wall'] for r in rows), sum(r['cpu'] for r in rows)
    lines = [f'| {key} | tests | wall (s) | CPU (s) | CPU share | cores busy |', '|---|---:|---:|---:|---:|---:|']
    for r in sorted(rows, key=lambda r: -r['cpu'])[:n]:
        lines.append(f"| {r['name']} | {r['tests']} | {r['wall']:.1f} | {r['cpu']:.1f} | {100 * r['cpu'] / (cpu or 1):.1f}% | "
                     f"{r['cpu'] / r['wall'] if r['wall'] else 0:.2f} |")
    lines.append(f"| **all {len(rows)}** | {sum(r['tests'] for r in rows)} | {wall:.1f} | {cpu:.1f} | 100% | {cpu / (wall or 1):.2f} |")
    return '\n'.join(lines)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('log', type=Path, help='the JSON lines MLWB_TEST_CPU_LOG named')
    p.add_argument('--tests', type=int, default=0, help='also list the N tests that cost the most CPU')
    a = p.parse_args(argv)
    rows = [json.loads(l) for l in a.log.read_text().splitlines() if l.strip()]
    if not rows: print(f'{a.log}: no tests recorded', file=sys.stderr); return 1
    files = [{'name': k, **v} for k, v in per_file(rows).items()]
    print(table(files, 'file'))
    if a.tests: print('\n' + table([{'name': r['test'], 'tests': 1, **r} for r in rows], 'test', a.tests))
    return 0

if __name__ == '__main__': sys.exit(main())
