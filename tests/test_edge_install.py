"""The device agent installed alone (issue 11.4): the built wheel without its core dependencies, plus the `edge` extra's
onnxruntime, numpy and cryptography, in a fresh venv with no torch, MLflow, Ray or pymilvus: `mlwb-edge` takes a signed
bundle from a channel and predicts a CSV."""
import json, sys, venv
from configparser import ConfigParser
from pathlib import Path
from conftest import REPO, sh, clean_env
from test_edge_agent import kit   # the signing keys and the tiny models' exports
import pytest

pytestmark = pytest.mark.slow   # separate processes or a fresh venv: not in `make test-fast`

HEAVY = {'torch', 'mlflow', 'mlflow-skinny', 'ray', 'pymilvus', 'milvus-lite', 'pandas', 'onnx', 'scipy', 'scikit-learn'}

def test_agent_in_a_fresh_venv_without_torch(kit, tmp_path):
    from mlops_workbench.export import publish_export
    sh([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp_path/'dist'), str(REPO)], tmp_path)
    wheel = next((tmp_path/'dist').glob('mlops_workbench-*.whl'))
    venv.create(tmp_path/'venv', with_pip=True)
    vbin = tmp_path/'venv'/'bin'
    user = {k: v for k, v in clean_env(PATH=f"{vbin}:/usr/bin:/bin").items() if k != 'PYTHONPATH'}
    cfg = ConfigParser(delimiters=['='])
    cfg.read(REPO/'settings.ini')
    edge_reqs = cfg['DEFAULT']['edge_requirements'].split()
    assert sorted(r.split('>')[0] for r in edge_reqs) == ['cryptography', 'numpy', 'onnxruntime']
    # --no-compile: the packages' bytecode is not what this test checks (pip compiles ~30 s of it for the train extras)
    pip = [str(vbin/'python'), '-m', 'pip', 'install', '-q', '--disable-pip-version-check', '--no-compile']
    sh([*pip, '--no-deps', str(wheel)], tmp_path, env=user)
    sh([*pip, '-c', str(REPO/'constraints.txt'), *edge_reqs], tmp_path, env=user, timeout=900)
    freeze = sh([str(vbin/'python'), '-m', 'pip', 'list', '--format=freeze'], tmp_path, env=user).stdout
    installed = {l.split('==')[0].lower() for l in freeze.split()}
    assert 'mlops-workbench' in installed and not installed & HEAVY, installed & HEAVY
    ch = tmp_path/'channel'
    publish_export(kit['dir']/'v1', ch, kit['key'])
    dev = tmp_path/'device'
    r = sh([str(vbin/'mlwb-edge'), 'run', '--channel', str(ch), '--device', str(dev), '--trust', str(kit['pub']), '--once'],
           tmp_path, env=user)
    assert 'updated to version 1 (sequence 1, slot a)' in r.stderr, r.stderr
    (tmp_path/'in.csv').write_text('id,a,b,c\n1,0.1,0.2,0.3\n')
    r = sh([str(vbin/'mlwb-edge'), 'predict', '--device', str(dev), str(tmp_path/'in.csv')], tmp_path, env=user)
    assert r.stdout.splitlines()[1].endswith(',1,run-1,fp-1,1'), r.stdout
    site = next((tmp_path/'venv'/'lib').glob('python*/site-packages'))
    mb = sum(f.stat().st_size for f in site.rglob('*') if f.is_file()) / 2**20
    print(f"edge install: {len(installed)} packages, {mb:.0f} MiB in site-packages")
