"""`mlwb explain REQUEST_ID`: the lineage of a served prediction and the training examples like its input. The
prediction log is written here as `mlwb serve` writes it (`serve.PredictionLog` with the champion loaded by
`serve.load_version`), in a copy of the session's pipeline run; tutorial 05 explains a request while the server runs
(tests/test_serve_loop.py)."""
import json, subprocess, sys
from conftest import sh, py, workbench

SERVE_TWO_ROWS = """
import json
import pandas as pd
from mlops_workbench.config import load_config
from mlops_workbench.serve import load_version, PredictionLog, LOG_DIR
cfg = load_config(); m = load_version(1, cfg)
test = pd.read_parquet(cfg.path('data', 'prepared', 'test.parquet')).head(2)
X = test[m.features].to_numpy(dtype='float32')
log = PredictionLog(cfg.path(*LOG_DIR), m.features, flush_s=60)
log.add('req-a', m, X, m.predict(X))
log.add('req-b', m, X[:1], m.predict(X[:1]))
log.add_feedback('req-a', {1: str(test['label'].iloc[1])})
log.close()
labels, preds = test['label'].astype(str).tolist(), [p['class'] for p in m.predict(X)]
print(json.dumps(dict(X=X.tolist(), labels=labels, preds=preds)))
"""

SEARCH = """
import json
from mlops_workbench.similar import search_similar
X = json.loads(open('x.json').read())
print(json.dumps([[h['id'] for h in hits] for hits in search_similar(X, 3, 'split == "train"', version=1)]))
"""

def explain(root, *args, check=True):
    return sh(['mlwb', 'explain', *args], root, check=check)

def test_explain_a_served_request(project_copy):
    root = project_copy
    served = json.loads(py(SERVE_TWO_ROWS, root).stdout)
    doc = json.loads(explain(root, 'req-a', '--k', '3', '--json').stdout)
    from mlops_workbench.registry import version_info
    info = version_info(1, workbench(root))
    lin = doc['versions']['1']
    assert lin['run_id'] == info['run_id'] and lin['params'] == info['params'] and lin['params']
    assert lin['git_commit'] == info['run_tags']['mlwb.git_commit'] and lin['git_commit']
    assert lin['data_fingerprint'] == json.loads((root/'metrics'/'prepare.json').read_text())['fingerprint']
    assert 'champion' in lin['roles'] and doc['complete'] and doc['log'] == str(root/'data'/'predictions')
    assert [r['row'] for r in doc['rows']] == [0, 1]
    assert [r['prediction'] for r in doc['rows']] == served['preds']
    assert [r['label'] for r in doc['rows']] == [None, served['labels'][1]]   # the late label (POST /feedback)
    for r in doc['rows']:
        assert r['model_version'] == 1 and r['run_id'] == info['run_id'] and r['collection'] == 'digits_classifier_v1'
        assert len(r['similar']) == 3 and all(h['split'] == 'train' for h in r['similar'])
        d = [h['distance'] for h in r['similar']]
        assert d == sorted(d) and all(h['label'] for h in r['similar'])
    # the same neighbours as a search of the logged input, embedded by v1, in v1's collection
    (root/'x.json').write_text(json.dumps(served['X']))
    ids = json.loads(py(SEARCH, root).stdout)
    assert [[h['id'] for h in r['similar']] for r in doc['rows']] == ids
    # as text: the lineage once, then each row with its neighbours
    out = explain(root, 'req-a', '--k', '3').stdout
    assert "digits-classifier v1 (" in out and f"run {info['run_id']}, git commit {lin['git_commit']}" in out, out
    assert f"data fingerprint {lin['data_fingerprint']}" in out and '  params: ' in out
    assert out.count('3 most similar training examples in digits_classifier_v1') == 2
    assert f"true label {served['labels'][1]}" in out
    # one row of a request
    one = json.loads(explain(root, 'req-a', '--row', '1', '--json').stdout)
    assert [r['row'] for r in one['rows']] == [1] and len(one['rows'][0]['similar']) == 5

def test_unknown_request_is_one_line(project_copy):
    r = explain(project_copy, 'nope', check=False)
    log = project_copy/'data'/'predictions'
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip() == f"mlwb: error: no prediction log at {log} (nothing served yet: `mlwb serve`)", r.stderr
    py(SERVE_TWO_ROWS, project_copy)
    r = explain(project_copy, 'nope', check=False)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"request 'nope' is not in the prediction log {project_copy/'data'/'predictions'} (2 requests" in r.stderr
    r = explain(project_copy, 'req-b', '--row', '4', check=False)
    assert r.returncode == 1 and 'request req-b has no row 4 (rows 0..0)' in r.stderr

def test_busy_store_and_gone_collection_still_show_the_lineage(project_copy):
    root = project_copy
    py(SERVE_TWO_ROWS, root)
    # another process holds the Milvus Lite directory: the lineage, then what to do, exit status 1
    holder = subprocess.Popen([sys.executable, '-c', "import sys, time; from mlops_workbench import vectors; "
                               "vectors.connect(); print('held', flush=True); time.sleep(120)"], cwd=root,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        r = explain(root, 'req-b', check=False)
    finally:
        holder.kill(); holder.wait(30)
    assert r.returncode == 1 and 'digits-classifier v1' in r.stdout and 'run ' in r.stdout, r.stdout + r.stderr
    assert 'no similar examples:' in r.stdout and 'mlwb milvus-server' in r.stdout, r.stdout
    # the version's collection is gone: said so, the lineage stands, exit status 0
    py("from mlops_workbench import vectors; vectors.connect().drop_collection('digits_classifier_v1')", root)
    r = explain(root, 'req-b', check=False)
    assert r.returncode == 0 and 'digits-classifier v1' in r.stdout and 'git commit' in r.stdout, r.stdout + r.stderr
    assert "no similar examples: collection gone: no Milvus collection 'digits_classifier_v1'" in r.stdout, r.stdout
    doc = json.loads(explain(root, 'req-b', '--json').stdout)
    assert doc['rows'][0]['similar'] is None and doc['complete'] and doc['versions']['1']['run_id']
