"""A broken champion is noticed (issue 8.7): `mlwb doctor` reports missing or altered model files and a corrupted DVC
cache object; `mlwb promote`/`rollback` refuse a broken target and do not keep a broken champion as `previous`;
`mlwb monitor` says what is wrong in one line. Real MLflow store, real DVC, the real `mlwb` console script."""
import shutil
from pathlib import Path
import pytest
from conftest import py, sh, workbench, roles

pytestmark = pytest.mark.slow   # three registered models, DVC, the CLI many times


SETUP = r'''
import numpy as np
from mlops_workbench.config import load_config
from mlops_workbench.train import build_model, seed_everything
from mlops_workbench.tracking import stage_run
from mlops_workbench.registry import register_model
cfg = load_config('.', env={})
for seed in (0, 1, 2):
    seed_everything(seed, 1)
    with stage_run('train', {'seed': seed}, 'fp0', cfg=cfg) as (c, rid): register_model(build_model('mlp', 4, 3, hidden=[5]), np.zeros((2, 4), dtype='float32'), rid, cfg)
print(c.get_model_version_download_uri(cfg.model_name, '1'))
'''

def mlwb(root, *args, check=False):
    return sh(['mlwb', *args], root, check=check)

def test_doctor_and_guarded_role_moves(tmp_path):
    root = tmp_path
    (root/'params.yaml').write_text('project: {}\n')
    v1 = Path(py(SETUP, root).stdout.split()[-1].removeprefix('file://'))
    r = mlwb(root, 'doctor', check=True)
    assert 'ok    champion   v1 loads' in r.stdout, r.stdout
    # a real DVC stage whose output is cached; then its cache object is corrupted
    sh('git init -q . && dvc init -q && dvc stage add -q -n s -o out.txt "echo hello > out.txt" && dvc repro -q', root)
    obj = next(p for p in (root/'.dvc'/'cache'/'files'/'md5').rglob('*') if p.is_file())
    obj.chmod(0o644); obj.write_text('tampered\n')
    # the champion's weights altered, then v3's files removed
    (v1/'artifacts'/'weights.pt').write_bytes(b'not a model')
    r = mlwb(root, 'doctor')
    assert r.returncode == 1
    assert 'FAIL  champion   v1 has an altered file artifacts/weights.pt' in r.stdout, r.stdout
    assert f"FAIL  dvc cache  s: out.txt: cache object {obj.parent.name}{obj.name} is corrupted" in r.stdout, r.stdout
    assert obj.read_text() == 'tampered\n'                                  # reported, not silently re-cached
    r = mlwb(root, 'monitor', '--no-run')
    assert r.returncode == 1 and r.stderr.count('\n') == 1 and 'the champion v1 has an altered file artifacts/weights.pt' in r.stderr, r.stderr
    # promote a sound version: the broken champion is not kept as `previous`, with a one-line warning
    r = mlwb(root, 'promote', '2', '--reason', 'v1 is broken', check=True)
    assert 'mlwb: warning: digits-classifier version 1 (the champion being replaced) has an altered file' in r.stderr, r.stderr
    assert roles(root) == {'champion': 2, 'challenger': 3}
    # a broken target is refused, in one line, and no alias moves
    r = mlwb(root, 'rollback', '--to', '1', '--reason', 'back')
    assert r.returncode == 1 and r.stderr.startswith('mlwb: error: digits-classifier version 1 has an altered file'), r.stderr
    assert r.stderr.count('\n') == 1
    from mlops_workbench.tracking import get_client
    cfg = workbench(root)
    shutil.rmtree(get_client(cfg).get_model_version_download_uri(cfg.model_name, '3').removeprefix('file://'))
    r = mlwb(root, 'promote', '3', '--reason', 'try')
    assert r.returncode == 1 and 'version 3 has no model files in the artifact store' in r.stderr and r.stderr.count('\n') == 1, r.stderr
    assert roles(root) == {'champion': 2, 'challenger': 3}
    r = mlwb(root, 'doctor')
    assert 'ok    champion   v2 loads' in r.stdout and 'ok    previous   no previous version' in r.stdout, r.stdout
