"""Retraining a pipeline run, as one scenario on one copy of it, each test asserting its part (issue 9.5: it replaces four
scenarios that each retrained a copy of their own):

1. `dvc repro train` with a long training, killed mid-training: no stage process is left, nothing is half-written, the
   earlier results stay;
2. a committed params change (`train.epochs`), then `mlwb run`: train and the stages after it run, prepare and the sweep
   do not; v2 is registered and its commit tag is the commit (clean);
3. a change of code (an edited library notebook) and another committed epochs, then `mlwb stage train`: v3, whose commit
   tag says `-dirty`; it takes the challenger role and leaves the champion;
4. the first params again, then `mlwb run`: the same weights as v1, so v1 is reused (no v4, tagged on the train run),
   the metrics equal the first run's, and no role moves.
Real papermill stages, DVC, MLflow (SQLite) and Milvus Lite."""
import json, os, signal, subprocess, time
import psutil, pytest
from conftest import sh, set_params, clean_env, workbench
from test_pipeline import mlflow_state, milvus_count
from test_package_lineage import version_commits
from test_stage_faults import tmp_files
import testkit

KEPT = ('models/model.json', 'reports/train.ipynb', 'metrics/train.json')   # the run's results a killed repro must keep
METRICS = ('train', 'evaluate', 'embed')

def volatile_free(d: dict) -> dict:
    "Metrics without timings and run identifiers, which legitimately differ between identical runs."
    return {k: v for k, v in d.items() if k not in ('train_seconds', 'samples_per_second', 'model_version', 'run_id', 'collection',
                                                    'insert_seconds', 'search_ms_per_query')}

def metrics(root) -> dict:
    return {s: json.loads((root/'metrics'/f'{s}.json').read_text()) for s in METRICS}

def registry(root) -> dict:
    "Roles, the audit log's length, models/model.json and the reuse tag of its train run, read in this process."
    from mlops_workbench.config import read_json
    from mlops_workbench.tracking import get_client
    from mlops_workbench import registry as R
    cfg = workbench(root); info = read_json(cfg.path('models', 'model.json'))
    return dict(roles=R.aliases(cfg), audit=len(R.read_audit(R.audit_path(cfg))), info=info,
                reuses=get_client(cfg).get_run(info['train_run_id']).data.tags.get('mlwb.reuses_version'))

def kill_mid_training(root) -> dict:
    "Start `dvc repro train` on a long training, SIGKILL it once the kernel runs; what was left."
    before = {f: (root/f).read_bytes() for f in KEPT}
    set_params(root, train={'epochs': 400})   # long enough that the kill lands mid-training, not after the last cell
    dvc = subprocess.Popen(['dvc', 'repro', 'train'], cwd=root, env=clean_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    t0, tree = time.time(), []
    while time.time() - t0 < 120:   # wait until papermill is writing the report and the kernel runs
        tree = psutil.Process(dvc.pid).children(recursive=True) if dvc.poll() is None else []
        if tmp_files(root/'reports') and any('ipykernel' in ' '.join(p.cmdline()) for p in tree if p.is_running()): break
        time.sleep(0.2)
    else:
        os.killpg(dvc.pid, signal.SIGKILL)
        pytest.fail('the train stage never started its kernel')
    os.kill(dvc.pid, signal.SIGKILL); dvc.wait()
    gone, alive = psutil.wait_procs(tree, timeout=20)
    return dict(tree=len(tree), alive=[p.cmdline() for p in alive], tmp=tmp_files(root),
                kept={f: (root/f).read_bytes() == b for f, b in before.items()})

def edit_library_notebook(root):
    "Append a markdown cell to nbs/02_train.ipynb: a change of code that the export does not see."
    path = root/'nbs'/'02_train.ipynb'
    nb = json.loads(path.read_text())
    nb['cells'].append({'cell_type': 'markdown', 'id': 'c0ffee00', 'metadata': {}, 'source': ['A note.']})
    path.write_text(json.dumps(nb, indent=1))

@pytest.fixture(scope='module')
def retrained(project, tmp_path_factory) -> dict:
    "The scenario, run once: what each step left, for the tests below to check."
    root = testkit.copy_run(project, tmp_path_factory.mktemp('retrain')/'repo')   # `project` stays the first run
    seen = dict(root=root, first=metrics(root),
                prepared=(root/'data'/'prepared'/'train.parquet').stat().st_mtime_ns)
    seen['killed'] = kill_mid_training(root)
    set_params(root, train={'epochs': 4})   # not the recorded 3 (the killed run recorded nothing): a run DVC must do
    seen['commit2'] = testkit.commit(root, 'four epochs', 'params.yaml')
    seen['run2'] = sh(['mlwb', 'run'], root).stdout   # `dvc repro` with the run's kernel pool
    seen['repro2'] = sh(['dvc', 'repro'], root).stdout
    seen['state2'], seen['metrics2'] = mlflow_state(root), metrics(root)
    seen['count2'] = milvus_count(root, 'digits_classifier_v2')
    seen['registry2'] = registry(root)
    edit_library_notebook(root)
    set_params(root, train={'epochs': 2})
    seen['commit3'] = testkit.commit(root, 'two epochs', 'params.yaml')   # the notebook's edit stays uncommitted
    sh(['mlwb', 'stage', 'train', '--no-progress'], root)
    seen['registry3'], seen['versions3'] = registry(root), version_commits(root)
    set_params(root, train={'epochs': 3})   # the first run's params: the same data, params and seed train the same weights
    seen['run4'] = sh(['mlwb', 'run'], root).stdout
    seen['registry4'], seen['versions4'], seen['again'] = registry(root), version_commits(root), metrics(root)
    seen['tmp'] = tmp_files(root)
    return seen

def test_killed_dvc_repro_leaves_no_stage_process_and_no_half_file(retrained):
    k = retrained['killed']
    assert k['tree'] and k['alive'] == [], k['alive']
    assert k['tmp'] == [] and all(k['kept'].values()), k
    # and the next run runs train cleanly: the killed one recorded nothing, and left nothing behind at the end either
    assert "Running stage 'train'" in retrained['run2'] and retrained['tmp'] == []

def test_one_param_reruns_train_and_after_not_prepare(retrained):
    out, root = retrained['run2'], retrained['root']
    assert "Stage 'prepare' didn't change, skipping" in out and "Stage 'sweep' didn't change, skipping" in out
    for s in METRICS: assert f"Running stage '{s}'" in out, out
    assert (root/'data'/'prepared'/'train.parquet').stat().st_mtime_ns == retrained['prepared']
    st = retrained['state2']
    assert [v['version'] for v in st['versions']] == [1, 2] and st['runs'][-1]['epochs'] == 4
    assert retrained['metrics2']['embed']['collection'] == 'digits_classifier_v2' and retrained['count2'] == 1797
    assert 'Running stage' not in retrained['repro2']

def test_retrained_versions_name_their_commit(retrained):
    "A committed params change: the new version's commit is clean (though v1's card and metrics changed); an edited library notebook is a change of code."
    assert retrained['versions3'][2] == retrained['commit2']
    assert retrained['versions3'][3] == retrained['commit3'] + '-dirty'

def test_a_new_version_is_the_challenger(retrained):
    r2, r3 = retrained['registry2'], retrained['registry3']
    assert r3['roles'] == {**r2['roles'], 'challenger': 3} and r3['info']['model_version'] == 3 and not r3['info']['reused']

def test_rerun_with_the_first_params_reuses_v1(retrained):
    again, r3, r4 = retrained['again'], retrained['registry3'], retrained['registry4']
    assert "Running stage 'train'" in retrained['run4']
    assert sorted(retrained['versions4']) == [1, 2, 3]                       # nothing new registered
    assert again['evaluate']['model_version'] == 1 and r4['info']['model_version'] == 1 and r4['info']['reused']
    assert r4['reuses'] == '1' and r4['info']['run_id'] == retrained['state2']['versions'][0]['run_id'] != r4['info']['train_run_id']
    assert r4['roles'] == r3['roles'] and r4['audit'] == r3['audit']          # no role moved, nothing audited
    for s in METRICS: assert volatile_free(again[s]) == volatile_free(retrained['first'][s]), s
