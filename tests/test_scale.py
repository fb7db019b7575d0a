"""Scale-out on a real Ray runtime: Ray Train (1-worker parity with the in-process loop, a worker killed mid-training
resumes from its checkpoint), sweeps (4 trials at once into a fresh MLflow store, failing and pruned trials, a killed
driver resumes), and a 2-node Ray cluster on loopback running a 2-worker training and a sweep through `dvc repro`."""
import json, os, signal, subprocess, time
import psutil, pytest
from conftest import sh, py, set_params, clean_env, tutorial_cells, workbench

pytestmark = pytest.mark.slow   # Ray runtimes, sweeps and a killed sweep


def test_sweep_stage_feeds_train_and_is_tracked_as_parent_and_children(project):
    best = json.loads((project/'models'/'best_params.json').read_text())
    sweep = json.loads((project/'metrics'/'sweep.json').read_text())
    assert sweep['n_trials'] == 4 and sweep['complete'] + sweep['pruned'] + sweep['failed'] == 4 and sweep['interrupted'] == 0
    from mlops_workbench.tracking import get_client, ensure_store
    cfg = workbench(project); c = get_client(cfg); exp = ensure_store(cfg)
    parents = [r for r in c.search_runs([exp], "tags.`mlwb.stage` = 'sweep'") if 'mlflow.parentRunId' not in r.data.tags]
    kids = c.search_runs([exp], f"tags.`mlflow.parentRunId` = '{best['mlflow_parent_run']}'")
    train = c.search_runs([exp], "tags.`mlwb.stage` = 'train'")[0]
    r = dict(parents=[r.info.run_id for r in parents], kids=[(r.data.tags['mlwb.trial'], r.info.status, r.data.tags['optuna.state']) for r in kids],
             train_tags=train.data.tags, train_params=train.data.params)
    assert r['parents'] == [best['mlflow_parent_run']]
    assert sorted(int(t) for t, _, _ in r['kids']) == [0, 1, 2, 3]   # one child per trial, none twice
    status = {'COMPLETE': 'FINISHED', 'PRUNED': 'KILLED', 'FAIL': 'FAILED'}
    assert all(s == status[o] for _, s, o in r['kids'])
    assert r['train_tags']['mlwb.sweep_run'] == best['mlflow_parent_run'] and r['train_tags']['mlwb.sweep_trial'] == str(best['trial'])
    assert r['train_params']['hidden'] == str(best['params']['hidden']) and float(r['train_params']['lr']) == pytest.approx(best['params']['lr'])

def test_ray_train_one_worker_matches_local_and_a_dead_worker_resumes_from_its_checkpoint(tmp_path):
    out = py("""
import json
from sklearn.datasets import load_digits
import os
from mlops_workbench.distributed import ray_runtime, train_distributed, fit, FAULT_ENV
from mlops_workbench.train import TrainSpec
X, y = load_digits(return_X_y=True); X, y = X.astype('float32'), y.astype('int64')
spec = TrainSpec(hidden=[32], dropout=0.1, epochs=5, lr=1e-2, seed=0, device='cpu')
_, local, _ = fit(spec, X[:1200], y[:1200], X[1200:], y[1200:], 10, backend='local', progress=False)
os.environ[FAULT_ENV] = '3'   # fault drill: rank 0 dies after epoch 3's checkpoint, once
with ray_runtime(num_cpus=2):
    _, hist, info = train_distributed(spec, X[:1200], y[:1200], X[1200:], y[1200:], 10)
print(json.dumps(dict(local=[h['val_loss'] for h in local], ray=[h['val_loss'] for h in hist], epochs=[h['epoch'] for h in hist], info=info)))
""", tmp_path, timeout=600).stdout
    r = json.loads(out.strip().splitlines()[-1])
    assert r['info']['attempts'] == 2 and r['info']['resumed'] == 1   # the worker died after epoch 3; the group restarted from its checkpoint
    assert r['epochs'] == [1, 2, 3, 4, 5]                             # continuous history: epochs 1-3 from the checkpoint, 4-5 after
    assert r['ray'] == pytest.approx(r['local'], abs=1e-6)             # and the same numbers as one uninterrupted in-process run

TOY = """
import json, math, time
from pathlib import Path
from mlops_workbench.config import load_config
from mlops_workbench.distributed import ray_runtime
from mlops_workbench.sweep import search_space, open_study, run_sweep
from mlops_workbench.tracking import stage_run
def toy(params, data, report):
    if params['batch_size'] == 13: raise RuntimeError('unlucky batch size')
    hist = []
    for step in range(1, 4):
        t0 = time.time(); time.sleep(0.15); v = (math.log10(params['lr']) + 2)**2 + 1/step
        hist.append({'step': step, 'loss': v, 'start': t0, 'end': time.time()})
        if report(step, v): break
    return hist
space = search_space(['mlp'], [[8]], [1e-4, 1.0], [0.0, 0.1], [13, 32, 64, 128])
"""

def test_four_parallel_trials_reach_a_fresh_store_once_each(tmp_path):
    out = py(TOY + """
cfg = load_config('.', env={})        # a brand-new SQLite store: the sweep's parent run creates it
with ray_runtime(num_cpus=4), open_study('sweeps/toy.journal', 'toy', startup_trials=3, pruner={'startup_trials': 3, 'warmup_epochs': 1}) as study:
    with stage_run('sweep', {'n': 16}, 'f00', cfg=cfg) as (client, parent):
        s = run_sweep(study, toy, space, None, n_trials=16, concurrency=4, pruner={'startup_trials': 3, 'warmup_epochs': 1},
                      deterministic=False, client=client, parent_id=parent, progress=False)
kids = client.search_runs([client.get_run(parent).info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")
spans = [(h['start'], h['end']) for t in study.trials for h in t.user_attrs.get('history', [])]
overlap = max(sum(a < e and s < b for a, b in spans) for s, e in spans)
print(json.dumps(dict(s=s, kids=[(r.data.tags['mlwb.trial'], r.info.status) for r in kids], states={t.number: t.state.name for t in study.trials},
                      errors={t.number: t.user_attrs.get('error', '') for t in study.trials}, overlap=overlap)))
""", tmp_path, timeout=600).stdout
    r = json.loads(out.strip().splitlines()[-1])
    assert r['s']['n_trials'] == 16 and r['overlap'] >= 4   # 4 trials really ran at once
    trials = sorted(int(t) for t, _ in r['kids'])
    assert trials == sorted(int(k) for k in r['states'])       # no run lost, none duplicated
    status = {'COMPLETE': 'FINISHED', 'PRUNED': 'KILLED', 'FAIL': 'FAILED'}
    assert all(s == status[r['states'][t]] for t, s in r['kids'])
    fails = [k for k, v in r['states'].items() if v == 'FAIL']
    assert fails and all('unlucky batch size' in r['errors'][k] for k in fails)   # failing trials are recorded, the sweep went on
    assert 'PRUNED' in r['states'].values() and 'COMPLETE' in r['states'].values()

def ray_procs_of(pids):
    "The processes (and their descendants) among pids that are still alive."
    out = []
    for pid in pids:
        try: p = psutil.Process(pid); out += [p] + p.children(recursive=True)
        except psutil.NoSuchProcess: pass
    return out

def test_a_killed_sweep_resumes_to_the_full_count_without_duplicates(scratch):
    set_params(scratch, sweep={'n_trials': 6, 'epochs': 60, 'hidden': [[32], [64], [128]], 'startup_trials': 6, 'pruner': 'none'})
    sh(['dvc', 'repro', 'prepare'], scratch)
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    p = subprocess.Popen(['mlwb', 'stage', 'sweep', '--no-progress'], cwd=scratch, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    def study():
        j = list((scratch/'sweeps').glob('*.journal'))
        if not j: return None
        st = JournalStorage(JournalFileBackend(str(j[0])))
        names = optuna.get_all_study_names(st)
        return optuna.load_study(study_name=names[0], storage=st) if names else None
    t0, before = time.time(), None
    while time.time() - t0 < 300:
        s = study()
        if s is not None and sum(t.state.name == 'COMPLETE' for t in s.trials) >= 2 and any(t.state.name == 'RUNNING' and len(t.params) == 5 for t in s.trials):   # a trial training (its 5 params drawn)
            before = {t.number: (t.state.name, t.datetime_complete) for t in s.trials}; break
        assert p.poll() is None, 'the sweep ended before it could be killed'
        time.sleep(0.2)
    else: pytest.fail('the sweep never got going')
    tree = ray_procs_of([p.pid])
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    gone, alive = psutil.wait_procs(tree, timeout=30)
    assert all(a.name().startswith('ray::') and 'Agent' in a.name() for a in alive), [a.cmdline() for a in alive]   # kernel, raylet, GCS, workers: gone
    gone, alive = psutil.wait_procs(alive, timeout=150)   # Ray's per-node agents notice their raylet died, try to report to the dead GCS, then exit
    assert not alive, [a.cmdline() for a in alive]
    sh(['mlwb', 'stage', 'sweep', '--no-progress'], scratch)   # the same sweep again: it resumes
    s = study(); trials = s.trials
    counted = [t for t in trials if t.state.is_finished() and not t.user_attrs.get('interrupted')]
    assert len(counted) == 6
    interrupted = [t for t in trials if t.user_attrs.get('interrupted')]
    assert interrupted and all(t.state.name == 'FAIL' for t in interrupted)
    whole = [t for t in interrupted if not t.user_attrs.get('incomplete')]   # incomplete: killed while its params were drawn (nbs/08_sweep)
    assert whole and all(len(t.params) < 5 for t in interrupted if t.user_attrs.get('incomplete'))
    retried = {t.user_attrs['retry_of']: t for t in trials if 'retry_of' in t.user_attrs}
    assert sorted(retried) == sorted(t.number for t in whole) and all(retried[t.number].params == t.params for t in whole)
    for n, (state, done) in before.items():   # what had finished before the kill was kept, not rerun
        if state == 'COMPLETE': assert (trials[n].state.name, trials[n].datetime_complete) == (state, done)
    configs = [json.dumps(t.params, sort_keys=True) for t in trials if t.state.name == 'COMPLETE' and 'duplicate_of' not in t.user_attrs]
    assert len(configs) == len(set(configs))   # no configuration trained twice
    m = json.loads((scratch/'metrics'/'sweep.json').read_text()); best = json.loads((scratch/'models'/'best_params.json').read_text())
    assert m['n_trials'] == 6 and m['interrupted'] == len(interrupted)
    from mlops_workbench.tracking import get_client, ensure_store
    cfg = workbench(scratch); c = get_client(cfg); exp = ensure_store(cfg)
    kids = c.search_runs([exp], f"tags.`mlflow.parentRunId` = '{best['mlflow_parent_run']}'")
    sweeps = [r for r in c.search_runs([exp], "tags.`mlwb.stage` = 'sweep'") if 'mlflow.parentRunId' not in r.data.tags]
    r = dict(kids=[(int(r.data.tags['mlwb.trial']), r.info.status) for r in kids], parents=len(sweeps))
    assert r['parents'] == 1                                           # the resumed sweep reused its parent run
    assert sorted(n for n, _ in r['kids']) == [t.number for t in trials]   # one child per trial, none lost, none twice
    assert all(st != 'RUNNING' for _, st in r['kids'])
    assert {n for n, st in r['kids'] if st == 'KILLED'} == {t.number for t in interrupted}

def test_a_two_node_cluster_runs_a_two_worker_training_and_a_sweep(tutorial_runs):
    """Tutorial 03 (nbs/tutorials/03_scale_out.ipynb) runs the pipeline on a 2-node Ray cluster of 1-CPU nodes (with an
    MLflow and a Milvus server), once per session: its results table is the check. The cluster's start and stop, and
    that it listens on loopback only: test_ray_loopback.py."""
    table = [c for c in tutorial_cells(tutorial_runs, '03_scale_out.ipynb') if "'train backend'" in ''.join(c['source'])]
    assert len(table) == 1
    text = ''.join(table[0]['outputs'][-1]['data']['text/plain']).splitlines()
    assert text[0].split() == ['train', 'backend', 'workers', 'val_accuracy', 'sweep', 'trials', 'concurrent', 'trials'], text
    _, backend, workers, acc, trials, concurrency = text[1].split()
    assert (backend, int(workers)) == ('ray', 2)          # backend auto + RAY_ADDRESS: Ray Train, one worker per 1-CPU node
    assert int(trials) == 4 and int(concurrency) == 2     # two trials at once: one on each node
    assert float(acc) > 0.75   # it learned: 3 epochs on the tutorial's (default) params, 0.84 measured; chance is 0.1
