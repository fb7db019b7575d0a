"""The loop closed on served traffic. Tutorial 05 (nbs/tutorials/05_serve.ipynb) walks it once per session in a scratch
copy of the repo: `mlwb serve`, labelled traffic (askew images) -> `mlwb served-batch` -> `mlwb monitor` (drift) ->
`mlwb retrain` -> the gate -> the server swaps to v2 -> rollback -> v2 in the shadow -> `mlwb shadow` -> `mlwb explain`
-> `mlwb serve --stop`. These tests read what that run left; no second server or pipeline runs."""
import json
import pytest
from conftest import sh, py, tutorial_root, tutorial_cell, cell_text, workbench

SERVE = '05_serve.ipynb'

@pytest.fixture(scope='module')
def ops(tutorial_runs):
    "The repo copy where tutorial 05 ran."
    return tutorial_root(tutorial_runs, SERVE)

def cell(tutorial_runs, code: str) -> dict:
    "The executed tutorial cell whose source contains `code`."
    return tutorial_cell(tutorial_runs, SERVE, code)

def frame(root, code:str) -> dict:
    "Run `code` (which sets `out`, a JSON-able value) in the repo copy; its value."
    return json.loads(py("import json\nimport pandas as pd\nfrom mlops_workbench.serve import read_log\n"
                         "from mlops_workbench.config import load_config\ncfg = load_config()\n" + code +
                         "\nprint(json.dumps(out, default=str))", root).stdout.splitlines()[-1])

BATCH_VS_LOG = """
seg = read_log(cfg.path('data', 'predictions'))
side = json.loads(cfg.path('data', 'batches', 'b0001-served.json').read_text())
b = pd.read_parquet(cfg.path('data', 'batches', 'b0001-served.parquet'))
taken = pd.concat([pd.read_parquet(cfg.path('data', 'predictions', s)) for s in side['segments']], ignore_index=True)
fb = read_log(cfg.path('data', 'predictions'), 'feedback').drop_duplicates(['request_id', 'row'], keep='last')
lab = taken[['request_id', 'row']].merge(fb, on=['request_id', 'row'], how='left')['label']
feats = [c for c in taken.columns if c not in ('request_id', 'row', 'time', 'model_version', 'run_id', 'prediction')]
from mlops_workbench.serve import load_version
m = load_version(1, cfg)
served = [p['class'] for p in m.predict(taken[feats].to_numpy(dtype='float32'))]
out = dict(side=side, segments_exist=all(cfg.path('data', 'predictions', s).exists() for s in side['segments']),
           all_segments=sorted(p.name for p in cfg.path('data', 'predictions').glob('seg-*.parquet')),
           ids_match=(b['id'] == taken['request_id'] + '-' + taken['row'].astype(str)).all(),
           features_match=b[feats].equals(taken[feats]), columns=list(b.columns)[:3],
           labels_match=(b['label'].astype(str) == lab.astype(str)).all() and lab.notna().all(),
           n=len(b), requests=taken['request_id'].nunique(), versions=sorted(taken['model_version'].unique().tolist()),
           predictions_match=served == taken['prediction'].astype(str).tolist(), feats=len(feats))
"""

def test_the_monitor_batch_is_the_served_traffic(ops):
    r = frame(ops, BATCH_VS_LOG)
    side = r['side']
    assert side['scenario'] == 'served' and side['labelled'] and side['labelled_rows'] == side['size'] == r['n'] == 204
    assert r['segments_exist'] and set(side['segments']) < set(r['all_segments'])   # later traffic: later segments
    assert r['requests'] == 9 and r['versions'] == [1] == side['versions']
    assert r['ids_match'] and r['features_match'] and r['labels_match'] and r['columns'][:2] == ['id', 'label']
    assert r['predictions_match'], "the logged answers are v1's answers to the logged inputs"
    mon = json.loads((ops/'data'/'monitoring'/'v1'/'b0001-served.json').read_text())
    assert mon['drift'] and mon['labelled'] and mon['n'] == 204
    assert json.loads((ops/'data'/'raw'/'pool.json').read_text())['batches'] == ['b0001-served']

def test_gate_decision_and_registry_agree(ops, tutorial_runs):
    gate = json.loads((ops/'metrics'/'gate.json').read_text())
    assert gate['challenger'] == 2 and gate['champion_before'] == 1 and gate['n'] > 100
    from mlops_workbench.registry import version_info
    tags = version_info(2, workbench(ops))['tags']
    assert tags['mlwb.gate.passed'] == str(gate['passed']) and tags['mlwb.gate.evidence'] == gate['evidence']
    h = json.loads(sh(['mlwb', 'history', '--json'], ops).stdout)
    assert h['roles'] == {'champion': 1, 'challenger': 2}   # after the tutorial's rollback
    promo = [x for x in h['history'] if x['alias'] == 'champion' and x['to'] == 2]
    assert len(promo) == 1 and promo[0]['action'] == ('gate' if gate['passed'] else 'promote'), promo
    if gate['passed']: assert promo[0]['evidence'] == gate['evidence']
    back = [x for x in h['history'] if x['alias'] == 'champion' and x['from'] == 2 and x['to'] == 1]
    assert len(back) == 1 and back[0]['action'] == 'rollback' and back[0]['seq'] > promo[0]['seq']
    assert 'hash chain intact' in sh(['mlwb', 'history', '--verify'], ops).stdout
    out = cell_text(cell(tutorial_runs, "run('retrain'"))
    assert f"challenger v2 {'PASSED' if gate['passed'] else 'REJECTED'}" in out, out

SWAPS = """
from mlops_workbench.registry import read_audit, audit_path
h = read_audit(audit_path(cfg))
promo = [x for x in h if x['alias'] == 'champion' and x['to'] == 2][0]['when']
back = [x for x in h if x['alias'] == 'champion' and x['from'] == 2 and x['to'] == 1][0]['when']
seg, sh = read_log(cfg.path('data', 'predictions')), read_log(cfg.path('data', 'predictions'), 'shadow')
t = seg['time']
between, after = seg[(t > pd.Timestamp(promo)) & (t < pd.Timestamp(back))], seg[t > pd.Timestamp(back)]
out = dict(between=sorted(between['model_version'].unique().tolist()), n_between=len(between),
           after=sorted(after['model_version'].unique().tolist()), n_after=len(after),
           v2_rows=int((seg['model_version'] == 2).sum()),
           shadowed=int(sh[sh['request_id'].isin(after['request_id'])]['challenger_version'].eq(2).sum()))
"""

def test_the_server_answered_with_the_new_version_after_the_promotion(ops, tutorial_runs):
    out = cell_text(cell(tutorial_runs, "after_promote = predict("))
    assert "'model_version': 2" in out and 'champion v1 -> v2 switched in' in out, out
    r = frame(ops, SWAPS)
    # the tutorial waited for the swap, then sent 2 rows: answered by v2; after the rollback, v1 with v2 in the shadow
    assert r['between'] == [2] and r['n_between'] == 2 == r['v2_rows'], r
    assert r['after'] == [1] and r['n_after'] == 120 and r['shadowed'] == 120, r
    v = cell_text(cell(tutorial_runs, "run('rollback'"))
    assert "'model_version': 1" in v and "'shadow': {'model_version': 2" in v, v

def test_shadow_explain_and_stop(ops, tutorial_runs):
    rep = json.loads(sh(['mlwb', 'shadow', '--json'], ops).stdout)
    assert rep['champion'] == 1 and rep['challenger'] == 2 and rep['labelled'] >= 120 and rep['decision']['n'] >= 120
    assert 'live gate: ' in cell_text(cell(tutorial_runs, "run('shadow')"))
    ex = cell_text(cell(tutorial_runs, "run('explain', live[0]"))
    assert 'row 0 at ' in ex and 'by v1 (run ' in ex and 'shadow v2: ' in ex and 'true label ' in ex, ex
    assert '3 most similar training examples in digits_classifier_v1' in ex and 'git commit ' in ex, ex
    js = cell(tutorial_runs, "run('explain', after_promote")
    assert 'text/html' in js['outputs'][-1]['data']   # v2's neighbours of a row v2 answered, as a table
    stop = cell_text(cell(tutorial_runs, "run('serve', '--stop')"))
    assert 'stopped the server on http://127.0.0.1:' in stop and 'mlwb serve: stopped in' in stop, stop
    assert not (ops/'.mlwb'/'serve.json').exists()
