"""The real pipeline end to end on small params: papermill kernels, DVC, MLflow (SQLite), Milvus Lite."""
import json
import yaml
from conftest import sh, py, workbench

STAGES = ['prepare', 'sweep', 'train', 'evaluate', 'embed']

def mlflow_state(root) -> dict:
    "Runs, versions and artifacts in the project's MLflow store."
    from mlops_workbench.tracking import get_client, ensure_store
    cfg = workbench(root); c = get_client(cfg)
    runs = c.search_runs([ensure_store(cfg)], order_by=['start_time ASC'])
    return dict(runs=[dict(id=r.info.run_id, status=r.info.status, tags=r.data.tags, params=r.data.params, metrics=r.data.metrics,
                           epochs=len(c.get_metric_history(r.info.run_id, 'val_loss')),
                           artifacts=[a.path for a in c.list_artifacts(r.info.run_id, 'reports')] + [a.path for a in c.list_artifacts(r.info.run_id, 'plots')])
                      for r in runs],
                versions=sorted([dict(version=int(v.version), run_id=v.run_id, tags=v.tags) for v in c.search_model_versions(f"name='{cfg.model_name}'")], key=lambda v: v['version']))

def milvus_count(root, collection) -> int:
    return int(py(f"from mlops_workbench.vectors import connect, count; print(count(connect(), {collection!r}))", root).stdout)

def test_pipeline_end_to_end(project):
    log = (project.parent/'first_repro.log').read_text()
    for s in STAGES: assert f"Running stage '{s}'" in log
    # executed notebooks, with no error outputs
    for s in STAGES:
        nb = json.loads((project/'reports'/f'{s}.ipynb').read_text())
        errors = [o for c in nb['cells'] for o in c.get('outputs', []) if o.get('output_type') == 'error']
        assert not errors, (s, errors)
        assert nb['metadata']['papermill']['parameters'], s  # papermill injected params.yaml's values
    assert not list((project/'reports').glob('.tmp-*'))
    prep, sweep, train, ev, emb = (json.loads((project/'metrics'/f'{s}.json').read_text()) for s in STAGES)
    assert prep['valid'] == 1797 and prep['rejected'] == 0
    assert prep['train_rows'] + prep['val_rows'] + prep['test_rows'] == 1797
    assert train['epochs'] == 3
    assert ev['accuracy'] > 0.85 and 0 < ev['macro_f1'] <= 1 and len(ev['per_class']) == 10
    assert set(ev['per_class']['3']) == {'precision', 'recall', 'f1', 'support'}
    # DVC plots files
    assert (project/'plots'/'confusion.csv').read_text().splitlines()[0] == 'actual,predicted'
    assert len((project/'plots'/'confusion.csv').read_text().splitlines()) == prep['test_rows'] + 1
    assert (project/'plots'/'confusion.png').stat().st_size > 1000
    assert len((project/'plots'/'train_history.csv').read_text().splitlines()) == 3 + 1
    # MLflow: one training run with params, per-epoch metrics, lineage, artifacts; one registered version
    st = mlflow_state(project)
    by_stage = lambda s: [r for r in st['runs'] if r['tags'].get('mlwb.stage') == s]
    assert len(by_stage('train')) == 1 and len(by_stage('sweep')) == 1 + 4 and len(st['runs']) == 6, st['runs']   # train; sweep parent + 4 trials
    run = by_stage('train')[0]
    best = json.loads((project/'models'/'best_params.json').read_text())['params']
    assert run['status'] == 'FINISHED'
    assert run['params']['epochs'] == '3' and run['params']['hidden'] == str(best['hidden'])   # the sweep's choice
    assert run['epochs'] == 3 and run['metrics']['test_accuracy'] == ev['accuracy']
    assert run['tags']['mlwb.data_fingerprint'] == prep['fingerprint']
    assert len(run['tags']['mlwb.git_commit']) >= 40 and run['tags']['mlwb.stage'] == 'train'
    assert {'reports/train.ipynb', 'reports/evaluate.ipynb', 'reports/embed.ipynb', 'plots/confusion.png', 'plots/train_history.png'} <= set(run['artifacts'])
    assert [v['version'] for v in st['versions']] == [1] and st['versions'][0]['run_id'] == run['id']
    assert st['versions'][0]['tags']['mlwb.data_fingerprint'] == prep['fingerprint']
    # Milvus: one vector per example, with lineage
    assert emb['collection'] == 'digits_classifier_v1' and emb['count'] == 1797
    assert milvus_count(project, emb['collection']) == 1797
    assert emb['knn_label_agreement'] > 0.8

def test_similarity_search(project):
    hits = json.loads(sh(['mlwb', 'search', '--id', '0', '-k', '4', '--json'], project).stdout)
    assert len(hits) == 4 and all(h['id'] != '0' for h in hits)
    assert sorted(h['distance'] for h in hits) == [h['distance'] for h in hits]
    assert {h['model_version'] for h in hits} == {1}
    assert sum(h['label'] == '0' for h in hits) >= 3   # digit 0 looks like other zeros
    # raw features of a stored example: its nearest neighbour is itself, at distance ~0
    code = ("import json, pandas as pd; from mlops_workbench.similar import search_similar; "
            "df = pd.read_parquet('data/prepared/test.parquet'); x = df.iloc[0][[c for c in df.columns if c.startswith('px_')]].to_numpy('float32'); "
            "h = search_similar(x, 1)[0][0]; print(json.dumps([str(df['id'].iloc[0]), h['id'], h['distance']]))")
    want, got, dist = json.loads(py(code, project).stdout)
    assert got == want and dist < 1e-3
    out = sh(['mlwb', 'search', '--id', '5', '--split', 'train'], project).stdout
    assert 'rank' in out and out.count('train') >= 5

def test_metrics_cli(project):
    out = sh(['mlwb', 'metrics'], project).stdout
    assert all(w in out for w in ('evaluate', 'accuracy', 'macro_f1', 'knn_label_agreement', 'fingerprint'))
    assert json.loads(sh(['mlwb', 'metrics', '--json'], project).stdout)['train']['epochs'] == 3

def test_noop_rerun_runs_nothing(project):
    before = mlflow_state(project)
    r = sh(['dvc', 'repro'], project)
    assert 'Running stage' not in r.stdout, r.stdout
    for s in STAGES: assert f"Stage '{s}' didn't change, skipping" in r.stdout
    after = mlflow_state(project)
    assert len(after['runs']) == len(before['runs']) and len(after['versions']) == len(before['versions'])

def test_bad_param_rejected_before_the_stage_runs(project):
    orig = (project/'params.yaml').read_text()
    try:
        params = yaml.safe_load(orig); params['train']['epoch'] = params['train'].pop('epochs')
        (project/'params.yaml').write_text(yaml.safe_dump(params))
        r = sh(['mlwb', 'stage', 'train'], project, check=False)
        assert r.returncode == 1
        assert 'train.epoch is not a parameter of nbs/stages/train.ipynb (did you mean train.epochs?)' in r.stderr
        assert 'train.epochs is missing' in r.stderr
        assert 'Executing' not in r.stderr and not (project/'reports'/'failed'/'train.ipynb').exists()
        params['train']['epochs'] = 'ten'; del params['train']['epoch']
        (project/'params.yaml').write_text(yaml.safe_dump(params))
        r = sh(['dvc', 'repro', 'train'], project, check=False)
        assert r.returncode != 0 and "train.epochs = 'ten' is str, expected int" in r.stdout + r.stderr
        assert sh(['mlwb', 'check'], project, check=False).returncode == 1
    finally:
        (project/'params.yaml').write_text(orig)
    assert 'train: 14 params ok' in sh(['mlwb', 'check'], project).stdout
