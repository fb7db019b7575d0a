"""DVC's own views of a pipeline run (issue 14.4): the plots page offline, every plot once with its axes, and metrics
that read well in `dvc metrics show`/`dvc metrics diff` while `mlwb metrics` keeps the full record.
Screenshot of the plots page: test-artifacts/views/dvc_plots.png."""
import json, sys, time
from pathlib import Path
import pytest, yaml
from conftest import REPO, sh, chrome, requested

sys.path.insert(0, str(REPO/'tools'))
import plots as plots_tool

ARTIFACTS = REPO/'test-artifacts'/'views'
HEADLINE_MAX = 4   # numbers per stage in metrics/headline/*.json




RENDERED_JS = """return {
  vega: document.querySelectorAll('.vega-embed .marks').length,
  embeds: document.querySelectorAll('.vega-embed').length,
  scripts_with_src: Array.from(document.scripts).filter(s => s.src).map(s => s.src),
  images: Array.from(document.images).map(i => [i.src, i.complete && i.naturalWidth > 0]),
  text: document.body.innerText}"""


def rendered(driver, page: Path, want: int, timeout: float = 90) -> dict:
    "Open `page` and wait (bounded) until `want` vega views have drawn; the page's state at the end."
    driver.get(page.as_uri())
    t0, info = time.monotonic(), {}
    while time.monotonic() - t0 < timeout:
        info = driver.execute_script(RENDERED_JS)
        if info['vega'] >= want: break
        time.sleep(0.5)
    return info


def vega_plots(dvc_yaml: Path) -> list:
    "The plots that dvc.yaml declares and Vega draws (every one but images)."
    out = []
    for p in yaml.safe_load(dvc_yaml.read_text())['plots']:
        name = p if isinstance(p, str) else next(iter(p))
        if not name.endswith(('.png', '.jpg', '.svg')): out.append(name)
    return out


def test_plots_declared_once_with_axes():
    "Each CSV is a plot in dvc.yaml's top-level `plots:` only, with its x and y; no stage declares plots itself."
    dvc = yaml.safe_load((REPO/'dvc.yaml').read_text())
    assert not [s for s, st in dvc['stages'].items() if st.get('plots')], "a stage-level plots: entry draws it again"
    for p in dvc['plots']:
        if isinstance(p, dict):
            (name, spec), = p.items()
            assert spec.get('x') and spec.get('y') and spec.get('title'), name


@pytest.fixture(scope='module')
def vendored() -> Path:
    "The Vega libraries as `make install` vendors them (npm registry, integrity-checked), once per checkout."
    return plots_tool.vendor()


@pytest.fixture(scope='module')
def plots_page(project, vendored, tmp_path_factory) -> Path:
    "`make plots` in the project where the pipeline ran."
    out = tmp_path_factory.mktemp('dvc_plots')/'page'
    r = sh([sys.executable, 'tools/plots.py', '--vendor', str(vendored), '-o', str(out)], project)
    assert 'works offline' in r.stdout, r.stdout + r.stderr
    return out/'index.html'


def test_plots_page_renders_every_plot_offline(plots_page, project):
    html = plots_page.read_text(encoding='utf-8')
    assert 'cdn.jsdelivr.net' not in html and '<script src=' not in html
    want = vega_plots(project/'dvc.yaml')
    assert len(want) == 4, want   # loss, accuracy, confusion matrix, sweep trials
    d = chrome(offline=True)
    try:
        info = rendered(d, plots_page, len(want))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        d.set_window_size(1280, max(1000, d.execute_script('return document.body.scrollHeight')))
        d.save_screenshot(str(ARTIFACTS/'dvc_plots.png'))
        urls = requested(d)
    finally: d.quit()
    assert info['vega'] == len(want) and info['embeds'] == len(want), info['vega']   # each drawn, each once
    assert not info['scripts_with_src'], info['scripts_with_src']
    assert info['images'] and all(ok for _, ok in info['images']), info['images']   # plots/confusion.png
    assert not [u for u in urls if u.startswith(('http:', 'https:'))], urls
    for t in ('Training loss per epoch', 'Accuracy per epoch', 'Confusion matrix', 'Sweep trials'): assert t in html, t


def test_metrics_show_reads_well_and_mlwb_keeps_the_details(project):
    shown = json.loads(sh(['dvc', 'metrics', 'show', '--json'], project).stdout)
    files = shown['']['data']
    stages = yaml.safe_load((project/'dvc.yaml').read_text())['stages']
    assert sorted(files) == sorted(f'metrics/headline/{s}.json' for s in stages)
    columns = set()
    for f, d in files.items():
        data = d['data']
        assert 1 <= len(data) <= HEADLINE_MAX, (f, data)
        assert all(isinstance(v, (int, float, bool)) for v in data.values()), (f, data)   # numbers, no ids or paths
        columns |= set(data)
    assert len(columns) <= 20, columns
    table = sh(['dvc', 'metrics', 'show'], project).stdout
    assert 'per_class' not in table and 'fingerprint' not in table and 'run_id' not in table
    # the full record is where the library, `mlwb metrics` and the tests read it
    full = json.loads(sh(['mlwb', 'metrics', '--json'], project).stdout)
    assert set(full) == {Path(f).stem for f in files}
    assert len(full['evaluate']['per_class']) == 10 and full['prepare']['fingerprint']
    derived = {('monitor', 'drifted_batches'): len(full['monitor']['drifted'])}   # a count of the list it records
    for f, d in files.items():
        for k, v in d['data'].items(): assert derived.get((Path(f).stem, k), full[Path(f).stem].get(k)) == v, (f, k)
    out = sh(['mlwb', 'metrics'], project).stdout
    assert 'macro_f1' in out and 'fingerprint' in out


def test_metrics_diff_names_only_headline_changes(project, tmp_path):
    "`dvc metrics diff` against the commit (the scratch copy's first commit has no metrics) lists headlines only."
    r = sh(['dvc', 'metrics', 'diff', '--all', '--json'], project)
    diff = json.loads(r.stdout or '{}')
    keys = {k for f in diff.values() for k in f}
    assert keys and not [k for k in keys if k.startswith('per_class') or k in ('run_id', 'fingerprint', 'evidence')]


def test_setup_makes_plain_dvc_plots_show_offline(scratch, vendored):
    "`make install` runs `tools/plots.py --setup`: afterwards a plain `dvc plots show` writes the offline page too."
    r = sh([sys.executable, 'tools/plots.py', '--setup', '--vendor', str(vendored)], scratch)
    assert 'offline' in r.stderr, r.stderr
    assert (scratch/'.dvc'/'config.local').exists() and '.dvc' not in sh(['git', 'status', '--porcelain'], scratch).stdout
    (scratch/'plots').mkdir(exist_ok=True)
    (scratch/'plots'/'train_history.csv').write_text('epoch,train_loss,val_loss,train_accuracy,val_accuracy\n1,1,1,0.5,0.5\n')
    sh(['dvc', 'plots', 'show', '-o', 'out'], scratch)
    html = (scratch/'out'/'index.html').read_text(encoding='utf-8')
    assert '/* vega@5.20.2 */' in html and 'cdn.jsdelivr.net' not in html and '<script src=' not in html
