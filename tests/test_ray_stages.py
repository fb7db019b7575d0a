"""The sweep and train stages on Ray, from one `mlwb run train` in a scratch copy (prepare, sweep, then train on Ray
Train: `train.backend: ray`) whose processes are sampled while it runs; each test reads that one run:
- the sweep and Ray Train share one Ray runtime, the run's (issue 13.4): one GCS for both stages, gone with the run;
- Ray listens on loopback only (issue 8.3): GCS, raylet, workers, agents and the kernel as driver, on 127.0.0.1/::1;
- the sweep shows its trials done/total with the best value so far on the terminal (issue 14.6), not in the report;
- no /tmp/mlwb-ray-* folder is left behind (issue 8.9);
- with `train.use_sweep: true` the train stage says which params.yaml values the sweep replaced (issue 9.4): a notice
  and a table in its report, MLflow tags `mlwb.from_sweep`/`mlwb.overridden` and params `params_yaml.<name>`.
A stage's private runtime (a direct `dvc repro`) is covered by test_ray_leftovers.py, test_scale.py and the tutorials."""
import json, re, subprocess
from pathlib import Path
import pytest
from conftest import copy_repo, set_params, clean_env, SMALL, workbench
from testkit import Sampler, cluster_processes, process_tree as tree
import psutil

pytestmark = pytest.mark.slow   # prepare, sweep and train on a private Ray runtime


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    "One `mlwb run train` with the small params (they set train.lr 0.01 and hidden [32]) on Ray Train, sampled as it runs."
    tmp = tmp_path_factory.mktemp('ray_stages')
    root = copy_repo(tmp/'repo')
    set_params(root, **{**SMALL, 'train': {**SMALL['train'], 'backend': 'ray'}})
    folder = []   # the run's shared runtime folder (read from a stage's environment)
    def roots():   # the run's tree, and the shared runtime's daemons (`ray start` leaves them to init)
        procs = tree([p.pid])
        if not folder:
            for q in procs:
                try: f = q.environ().get('MLWB_RAY_RUN')
                except psutil.Error: continue
                if f: folder.append(f); break
        return procs + cluster_processes(*folder)
    with open(tmp/'out.txt', 'w') as out, open(tmp/'err.txt', 'w') as err:
        p = subprocess.Popen(['mlwb', 'run', 'train'], cwd=root, env=clean_env(), stdout=out, stderr=err,
                             start_new_session=True)
        s = Sampler(roots)
        s.start()
        try: rc = p.wait(timeout=1500)
        finally:
            s.stop.set()
            s.join()
    stderr = (tmp/'err.txt').read_text()
    assert rc == 0, stderr[-3000:] + (tmp/'out.txt').read_text()[-3000:]
    return dict(root=root, sampler=s, stderr=stderr, stdout=(tmp/'out.txt').read_text(), folder=folder)

def test_the_sweep_and_ray_train_share_the_runs_runtime(run):
    s = run['sampler']
    gcs = {pid for pid, name in s.procs if name == 'gcs_server'}
    assert len(gcs) == 1, s.procs   # before: the sweep's private runtime, then Ray Train's (two GCS, two starts)
    assert run['folder'] and not any(run['folder'][0] in ' '.join(q.info['cmdline'] or [])
                                     for q in psutil.process_iter(['cmdline']))   # gone with the run
    for stage in ('sweep', 'train'): assert 'starting a private one' not in (run['root']/'reports'/f'{stage}.ipynb').read_text()
    metrics = json.loads((run['root']/'metrics'/'train.json').read_text())
    assert metrics['backend'] == 'ray', metrics

def test_ray_listens_on_loopback_only(run):
    s = run['sampler']
    assert {'gcs_server', 'raylet'} <= s.names() and any(n.startswith('ray::') for n in s.names()), s.seen
    assert not s.exposed(), s.exposed()   # before: GCS, raylet, workers and the driver on ::, agents on 0.0.0.0/host

def test_the_sweep_shows_trials_and_best_value_on_the_terminal(run):
    bars = re.findall(r'sweep:.*?(\d+)/4 \[.*?best=([-0-9.e]+)', run['stderr'])
    assert bars and bars[-1][0] == '4', run['stderr'][-2000:]
    best = json.loads((run['root']/'models'/'best_params.json').read_text())['value']
    assert float(bars[-1][1]) == float(f"{best:.4g}")
    assert 'best=' not in (run['root']/'reports'/'sweep.ipynb').read_text()   # on the terminal, not in the report

def test_no_ray_folder_is_left_behind(run):
    folders = {m for c in run['sampler'].cmdlines for m in re.findall(r'/tmp/mlwb-ray-\w+', c)}
    assert folders and not any(Path(f).exists() for f in folders)

def test_the_train_stage_shows_which_params_the_sweep_replaced(run):
    root = run['root']
    best = json.loads((root/'models'/'best_params.json').read_text())['params']
    from mlops_workbench.tracking import get_client, ensure_store
    cfg = workbench(root)
    r = get_client(cfg).search_runs([ensure_store(cfg)], "tags.`mlwb.stage` = 'train'")[0]
    tags, params = r.data.tags, r.data.params
    assert tags['mlwb.from_sweep'] == 'batch_size,dropout,hidden,lr,model'
    assert float(params['lr']) == best['lr'] and params['hidden'] == str(best['hidden'])   # the sweep's values trained
    assert params['params_yaml.lr'] == '0.01'                                               # params.yaml's, not used
    assert f"lr: 0.01 -> {best['lr']}" in tags['mlwb.overridden']
    if best['hidden'] != [32]:
        assert params['params_yaml.hidden'] == '[32]' and 'hidden: [32] -> ' in tags['mlwb.overridden']
    else: assert 'params_yaml.hidden' not in params
    report = (root/'reports'/'train.ipynb').read_text()
    assert "use_sweep: params.yaml's" in report and 'train.lr=0.01' in report   # the notice
    assert 'params.yaml' in report and 'source' in report                        # the table of values and sources
