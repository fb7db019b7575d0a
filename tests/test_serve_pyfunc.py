"""A registered version serves with plain MLflow (issue 10.9) and loads without arbitrary pickle (issue 12.5):
`mlflow.pyfunc.load_model` with mlops_workbench not importable predicts what `load_torch_model` predicts;
`mlflow models serve` from a fresh venv holding only the model's requirements answers float64 `dataframe_split` input
with labels and probabilities; altered weights, or a pickle planted as the weights, are refused without being run."""
import json, os, pickle, signal, subprocess, sys, time, urllib.request, venv
from pathlib import Path
import numpy as np, pandas as pd
import pytest
from conftest import REPO, sh, clean_env
from testkit import free_port

pytestmark = pytest.mark.slow   # a pipeline run, registered models, a fresh venv: not in `make test-fast`

ISOLATED = """
import importlib.util, json, os, sys
sys.meta_path = [f for f in sys.meta_path if 'mlops_workbench' not in getattr(f, '__module__', '')]   # editable install
sys.path_hooks = [f for f in sys.path_hooks if 'mlops_workbench' not in getattr(f, '__module__', '')]
sys.path_importer_cache.clear()
sys.path = [p for p in sys.path if not os.path.isdir(os.path.join(p or '.', 'mlops_workbench'))]
assert importlib.util.find_spec('mlops_workbench') is None, 'mlops_workbench is importable'
import mlflow, mlflow.pyfunc, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
doc = json.loads(open(sys.argv[2]).read())
try: model = mlflow.pyfunc.load_model(sys.argv[3])
except Exception as e: print('REFUSED', str(e).splitlines()[0]); raise SystemExit(0)
out = model.predict(pd.DataFrame(doc['data'], columns=doc['columns'], dtype='float64'))
assert not [m for m in sys.modules if m.startswith('mlops_workbench')], 'the workbench was imported'
print(json.dumps({'columns': list(out.columns), 'label': out['label'].tolist(),
                  'proba_sum': out.filter(like='proba_').sum(axis=1).tolist()}))
"""

def isolated(tracking_uri:str, X:pd.DataFrame, model_uri:str, tmp:Path) -> str:
    "Run `mlflow.pyfunc.load_model(model_uri).predict(X)` in `python -I` where mlops_workbench cannot be imported."
    (tmp/'X.json').write_text(X.to_json(orient='split', index=False))
    env = {k: v for k, v in clean_env().items() if k != 'PYTHONPATH'}
    r = subprocess.run([sys.executable, '-I', '-c', ISOLATED, tracking_uri, str(tmp/'X.json'), model_uri], cwd=tmp,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip().splitlines()[-1]

def champion(root:Path):
    "The project's config, its champion version and a few held-out rows as float64 named columns."
    from mlops_workbench.config import load_config
    from mlops_workbench.data import load_prepared
    from mlops_workbench.registry import aliases
    cfg = load_config(root, env={})
    splits, meta = load_prepared(root/'data'/'prepared')
    X = splits['test'][meta['features']].astype('float64').head(40)
    return cfg, aliases(cfg)['champion'], X, meta

def torch_labels(version, cfg, X:pd.DataFrame, classes:list) -> list:
    "The labels `load_torch_model` (what the workbench's own stages use) predicts."
    import torch
    from mlops_workbench.tracking import load_torch_model
    with torch.no_grad(): idx = load_torch_model(version, cfg)(torch.tensor(X.values, dtype=torch.float32)).argmax(1)
    return [classes[i] for i in idx.tolist()]

def test_pyfunc_loads_without_the_workbench(project, tmp_path):
    cfg, v, X, meta = champion(project)
    got = json.loads(isolated(cfg.tracking_uri, X, f'models:/{cfg.model_name}@champion', tmp_path))
    assert got['columns'] == ['label'] + [f'proba_{c}' for c in meta['classes']], got['columns']
    assert got['label'] == torch_labels(v, cfg, X, meta['classes'])
    assert np.allclose(got['proba_sum'], 1, atol=1e-5)
    reqs = (Path(get_local(cfg, v))/'requirements.txt').read_text()
    assert 'mlops' not in reqs and 'torch==' in reqs, reqs

def get_local(cfg, v) -> str:
    "The local folder of a registered version's files."
    from mlops_workbench.tracking import get_client
    return get_client(cfg).get_model_version_download_uri(cfg.model_name, str(v)).removeprefix('file://')

def test_mlflow_models_serve_from_a_fresh_venv(project, tmp_path):
    cfg, v, X, meta = champion(project)
    venv.create(tmp_path/'venv', with_pip=True)
    vbin = tmp_path/'venv'/'bin'
    env = {k: v for k, v in clean_env(PATH=f"{vbin}:/usr/bin:/bin", MLFLOW_TRACKING_URI=cfg.tracking_uri).items()
           if k != 'PYTHONPATH'}
    reqs = Path(get_local(cfg, v))/'requirements.txt'
    # --no-compile: the packages' bytecode is not what this test checks (pip compiles ~30 s of it for the train extras)
    sh([str(vbin/'python'), '-m', 'pip', 'install', '-q', '--no-compile', '-r', str(reqs), '-c', str(REPO/'constraints.txt')],
       tmp_path, env=env, timeout=1500)
    freeze = sh([str(vbin/'python'), '-m', 'pip', 'list', '--format=freeze'], tmp_path, env=env).stdout.lower()
    assert 'mlops' not in freeze and 'torch==' in freeze, freeze
    port, log = free_port(), open(tmp_path/'serve.log', 'w')
    proc = subprocess.Popen([str(vbin/'mlflow'), 'models', 'serve', '-m', f'models:/{cfg.model_name}@champion',
                             '--env-manager', 'local', '-h', '127.0.0.1', '-p', str(port)], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f'http://127.0.0.1:{port}'
    try:
        deadline = time.time() + 300
        while True:
            assert proc.poll() is None, (tmp_path/'serve.log').read_text()[-3000:]
            assert time.time() < deadline, 'mlflow models serve not ready in 300 s\n' + (tmp_path/'serve.log').read_text()[-3000:]
            try:
                if urllib.request.urlopen(base + '/ping', timeout=5).status == 200: break
            except OSError: time.sleep(1)
        body = json.dumps({'dataframe_split': {'columns': list(X.columns), 'data': X.values.tolist()}}).encode()
        req = urllib.request.Request(base + '/invocations', body, {'Content-Type': 'application/json'})
        preds = json.loads(urllib.request.urlopen(req, timeout=120).read())['predictions']
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    assert [p['label'] for p in preds] == torch_labels(v, cfg, X, meta['classes'])
    assert all(abs(sum(p[f'proba_{c}'] for c in meta['classes']) - 1) < 1e-5 for p in preds), preds[0]

class Planted:
    "A pickle that would leave a marker file if it were ever unpickled."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (exec, (f"open({self.marker!r}, 'w').write('ran')",))

def tiny_store(tmp:Path):
    "A store with one small registered version (champion); returns (cfg, its folder)."
    import torch
    from mlops_workbench.config import load_config
    from mlops_workbench.tracking import stage_run
    from mlops_workbench.train import build_model
    from mlops_workbench.registry import register_model
    cfg = load_config(tmp/'store', env={})
    torch.manual_seed(0)
    with stage_run('train', cfg=cfg) as (client, rid):
        register_model(build_model('mlp', 4, 3, hidden=[5]), np.zeros((2, 4), dtype='float32'), rid, cfg=cfg,
                       features=['a', 'b', 'c', 'd'], classes=['x', 'y', 'z'])
    return cfg, Path(get_local(cfg, 1))

def test_tampered_or_planted_weights_are_refused(tmp_path):
    from mlops_workbench.tracking import load_torch_model, ModelTampered, get_client, TAG_FILES_SHA
    cfg, d = tiny_store(tmp_path)
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(3, 4)), columns=['a', 'b', 'c', 'd'])
    uri = f'models:/{cfg.model_name}/1'
    assert json.loads(isolated(cfg.tracking_uri, X, uri, tmp_path))['label'] == torch_labels(1, cfg, X, ['x', 'y', 'z'])
    weights, good = d/'artifacts'/'weights.pt', (d/'artifacts'/'weights.pt').read_bytes()
    weights.write_bytes(good[:200] + bytes([good[200] ^ 1]) + good[201:])   # one bit flipped
    with pytest.raises(ModelTampered, match='artifacts/weights.pt differ from the sha256 recorded at registration'):
        load_torch_model(1, cfg)
    assert 'sha256 differs from the one recorded' in isolated(cfg.tracking_uri, X, uri, tmp_path)   # plain MLflow too
    marker = tmp_path/'RAN'
    weights.write_bytes(pickle.dumps({'norm.mean': Planted(marker)}))
    with pytest.raises(ModelTampered): load_torch_model(1, cfg)
    # an attacker who can also rewrite the recorded hashes: the pickle is still refused, never run
    import hashlib
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    conf = json.loads((d/'artifacts'/'config.json').read_text())
    (d/'artifacts'/'config.json').write_text(json.dumps({**conf, 'weights_sha256': sha}))
    c = get_client(cfg)
    files = json.loads(c.get_model_version(cfg.model_name, '1').tags[TAG_FILES_SHA])
    files.update({'artifacts/weights.pt': sha,
                  'artifacts/config.json': hashlib.sha256((d/'artifacts'/'config.json').read_bytes()).hexdigest()})
    c.set_model_version_tag(cfg.model_name, '1', TAG_FILES_SHA, json.dumps(files))
    with pytest.raises(FileNotFoundError, match='not a plain tensor state_dict, refused without running it'):
        load_torch_model(1, cfg)
    out = isolated(cfg.tracking_uri, X, uri, tmp_path)
    assert out.startswith('REFUSED') and 'not a plain tensor state_dict' in out, out
    assert not marker.exists()
