"""The operations loop end to end on small params. The scenario runs once per session, as tutorial 04
(nbs/tutorials/04_operate.ipynb) walks it in a scratch copy of the repo: the pipeline, a clean batch, `mlwb loop` on a
rotated batch (drift detected, retraining, the gate's decision), a promotion by hand where the gate kept v1, rollback
twice. These tests check what that run left and go on from there: the gate rerun, a roll forward, refusals, the audit
log. The first pipeline run's champion and card are read from the session's `project` run."""
import ast, json
import pytest
from conftest import sh, tutorial_root, tutorial_cell, cell_text, workbench, roles

OPERATE = '04_operate.ipynb'

@pytest.fixture(scope='module')
def ops(tutorial_runs):
    "The repo copy where tutorial 04 ran."
    return tutorial_root(tutorial_runs, OPERATE)

def cell(tutorial_runs, code: str) -> dict:
    "The executed tutorial cell whose source contains `code`."
    return tutorial_cell(tutorial_runs, OPERATE, code)

def version_tags(root, v) -> dict:
    from mlops_workbench.registry import version_info
    return version_info(v, workbench(root))['tags']

def test_pipeline_yields_champion_with_card(project):
    assert roles(project) == {'champion': 1, 'challenger': 1}
    gate = json.loads((project/'metrics'/'gate.json').read_text())
    assert gate['passed'] and gate['champion'] == 1 and 'first registered version' in gate['reasons'][0]
    prep = json.loads((project/'metrics'/'prepare.json').read_text())
    md = (project/'reports'/'model_cards'/'v1.md').read_text()
    for part in ('# Model card: digits-classifier v1', prep['fingerprint'], '## Gate decision', 'First registered version',
                 '| 3 |', 'Training params', 'Known limitations', 'train:', '## History of roles'):
        assert part in md, part
    assert '<table>' in (project/'reports'/'model_cards'/'v1.html').read_text()
    mon = json.loads((project/'metrics'/'monitor.json').read_text())
    assert mon == {'batches_checked': 0, 'champion': 1, 'drifted': [], 'latest': None}
    from mlops_workbench.tracking import get_client
    from mlops_workbench.registry import version_info
    cfg = workbench(project)
    arts = [a.path for a in get_client(cfg).list_artifacts(version_info(1, cfg)['run_id'], 'model_card')]
    assert 'model_card/v1.md' in arts and 'model_card/v1.html' in arts

def test_the_tutorial_leaves_v1_champion_after_its_rollback(ops):
    gate = json.loads((ops/'metrics'/'gate.json').read_text())
    assert gate['challenger'] == 2 and gate['champion_before'] == 1
    h = json.loads(sh(['mlwb', 'history', '--json'], ops).stdout)
    assert h['roles'] == {'champion': 1, 'challenger': 2} and h['history'][-1]['action'] == 'rollback'

def test_clean_batch_is_not_flagged(ops, tutorial_runs):
    out = cell_text(cell(tutorial_runs, "run('simulate', '--scenario', 'none'"))
    assert 'data/batches/b0001-none.parquet' in out and 'b0001-none' in out.split('b0001-none.parquet', 1)[1], out
    assert 'DRIFT' not in out, out
    rep = json.loads((ops/'data'/'monitoring'/'v1'/'b0001-none.json').read_text())
    assert rep['drift'] is False and rep['labelled'] and len(rep['features']['table']) == 64

def test_drift_retrain_gate_rollback(ops, tutorial_runs):
    r = ast.literal_eval(''.join(cell(tutorial_runs, "run('loop', '--scenario', 'rotate'")['outputs'][-1]['data']['text/plain']))
    assert r['batch'] == 'b0002-rotate' and r['drift'] and 'features' in r['families'] and r['retrained']
    assert r['champion_before'] == 1 and r['challenger'] == 2
    assert json.loads((ops/'metrics'/'monitor.json').read_text())['latest']['batch'] == 'b0002-rotate'
    # the new data version: the batch went into the pool and through the prepare stage's validation
    assert json.loads((ops/'data'/'raw'/'pool.json').read_text())['batches'] == ['b0002-rotate']
    assert json.loads((ops/'metrics'/'prepare.json').read_text())['valid'] == 1797 + 200
    gate = json.loads((ops/'metrics'/'gate.json').read_text())
    assert gate['challenger'] == 2 and gate['champion_before'] == 1 and gate['n'] > 100
    assert gate['ci_low'] <= gate['delta'] <= gate['ci_high'] and 0 <= gate['mcnemar_p'] <= 1
    assert gate['evidence'].startswith('runs:/') and gate['passed'] == r['gate_passed']
    tags = version_tags(ops, 2)
    assert tags['mlwb.gate.passed'] == str(gate['passed']) and tags['mlwb.gate.evidence'] == gate['evidence']
    assert (ops/'reports'/'model_cards'/'v2.md').exists() and 'against champion v1' in (ops/'reports'/'model_cards'/'v2.md').read_text()
    # v2 became champion (by the gate, or by hand where the gate kept v1), then the tutorial rolled back twice
    out = cell_text(cell(tutorial_runs, "run('rollback', '--reason'"))
    assert 'champion  2 -> 1' in out and 'nothing changed' in out.split('champion  2 -> 1', 1)[1], out
    assert roles(ops) == {'champion': 1, 'challenger': 2}
    # rerunning the gate stage (as new code or params would) repeats v2's decision and leaves the rollback alone
    sh(['mlwb', 'stage', 'gate', '--no-progress'], ops)
    assert roles(ops) == {'champion': 1, 'challenger': 2}
    assert json.loads((ops/'metrics'/'gate.json').read_text())['passed'] == gate['passed']
    # the monitor's executed notebook shows its plots
    nb = json.loads((ops/'reports'/'monitor.ipynb').read_text())
    assert any('image/png' in o.get('data', {}) for c in nb['cells'] for o in c.get('outputs', []))
    # the audit log: append-only, chained, every move with who/why/when/evidence
    h = json.loads(sh(['mlwb', 'history', '--json'], ops).stdout)['history']
    moves = [(x['alias'], x['from'], x['to']) for x in h]
    assert moves[-2:] == [('champion', 2, 1), ('previous', 1, None)]
    assert ('champion', 1, 2) in moves and ('previous', None, 1) in moves   # the promotion the rollback undid
    promo = [x for x in h if x['alias'] == 'champion' and x['to'] == 2][0]
    assert promo['action'] == ('gate' if gate['passed'] else 'promote') and promo['who'] and promo['when'] and promo['why']
    if gate['passed']: assert promo['evidence'] == gate['evidence']
    assert all(set(x) >= {'seq', 'when', 'who', 'why', 'alias', 'from', 'to', 'action', 'evidence', 'prev', 'model'} for x in h)
    assert 'hash chain intact' in sh(['mlwb', 'history', '--verify'], ops).stdout
    assert any(k.startswith('mlwb.audit.') and '"rollback"' in v for k, v in version_tags(ops, 1).items())
    # roll forward to a named version, then refuse the same batch twice
    sh(['mlwb', 'rollback', '--to', '2', '--reason', 'test: v2 is fine after all'], ops)
    assert roles(ops)['champion'] == 2
    r = sh(['mlwb', 'retrain', 'data/batches/b0002-rotate.parquet'], ops, check=False)
    assert r.returncode == 1 and r.stderr.strip() == 'mlwb: error: b0002-rotate is already in the training pool data/raw/pool.csv'

def test_user_errors_are_one_line(ops):
    for cmd, msg in ((['promote', '9', '--reason', 'x'], 'has no version 9'), (['card', '9'], 'has no version 9'),
                     (['rollback', '--to', 'abc', '--reason', 'x'], "'abc' is not a version number"),
                     (['promote', '1', '--reason', '  '], 'a reason is required'),
                     (['retrain', 'data/batches/nope.parquet'], 'file not found')):
        r = sh(['mlwb', *cmd], ops, check=False)
        assert r.returncode == 1 and r.stderr.startswith('mlwb: error: ') and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, (cmd, r.stderr)

def test_audit_log_survives_tampering_check(ops):
    log = ops/'registry'/'audit.jsonl'
    lines = log.read_text().splitlines(); saved = log.read_text()
    try:
        log.write_text('\n'.join(lines[:2] + lines[3:]) + '\n')   # a deleted record
        r = sh(['mlwb', 'history', '--verify'], ops, check=False)
        assert r.returncode == 1 and 'line 3 breaks the chain' in r.stderr
    finally: log.write_text(saved)
