"""The wheel's light core (issue 14.7): `pip install mlops-workbench` without extras pulls no heavy dependency, its pure
modules work, `mlwb --version` works anywhere, every command outside a project says so in one line and creates
nothing, and inside one `mlwb check` runs on the core alone."""
import shutil, subprocess, sys, venv
from configparser import ConfigParser
from pathlib import Path
import pytest
from conftest import REPO, sh, clean_env

pytestmark = pytest.mark.slow   # a fresh venv with the wheel


HEAVY = {'torch', 'ray', 'mlflow', 'mlflow-skinny', 'pymilvus', 'milvus-lite', 'dvc', 'papermill', 'optuna',
         'onnxruntime', 'ipykernel'}

@pytest.fixture(scope='module')
def core(tmp_path_factory) -> Path:
    "A fresh venv holding the wheel with its core dependencies only; returns its bin folder."
    tmp = tmp_path_factory.mktemp('core')
    sh([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp/'dist'),
        str(REPO)], tmp)
    wheel = next((tmp/'dist').glob('mlops_workbench-*.whl'))
    venv.create(tmp/'venv', with_pip=True)
    vbin = tmp/'venv'/'bin'
    # --no-compile: the packages' bytecode is not what this test checks (pip compiles ~30 s of it for the train extras)
    pip = [str(vbin/'python'), '-m', 'pip', 'install', '-q', '--disable-pip-version-check', '--no-compile']
    sh([*pip, '-c', str(REPO/'constraints.txt'), str(wheel)], tmp, timeout=1200, env=user_env(vbin))
    return vbin

def user_env(vbin: Path) -> dict:
    "A user of the installed wheel: its venv on PATH, no PYTHONPATH pointing at a checkout."
    return {k: v for k, v in clean_env(PATH=f"{vbin}:/usr/bin:/bin").items() if k != 'PYTHONPATH'}

def test_core_installs_no_heavy_dependency(core):
    freeze = sh([str(core/'python'), '-m', 'pip', 'list', '--format=freeze'], core, env=user_env(core)).stdout
    installed = {l.split('==')[0].lower() for l in freeze.split()}
    assert 'mlops-workbench' in installed and not installed & HEAVY, installed & HEAVY
    site = next((core.parent/'lib').glob('python*/site-packages'))
    mb = sum(f.stat().st_size for f in site.rglob('*') if f.is_file()) / 2**20
    print(f"core install: {len(installed)} packages, {mb:.0f} MiB in site-packages")

def test_pure_modules_work_on_the_core(core, tmp_path):
    code = r"""
import sys, numpy as np, mlops_workbench
assert 'site-packages' in mlops_workbench.__file__, mlops_workbench.__file__
from mlops_workbench import config, data, evaluate, gate, batches, monitor, cards, checks, stages, cli
from mlops_workbench.config import load_config, NotAProject
from mlops_workbench.data import ingest, Schema, split_dataset
from mlops_workbench.evaluate import classification_metrics
try: load_config(); print('no error')
except NotAProject as e: print('NotAProject:', e)
clean, rejected, schema = ingest('digits', Schema())
y = split_dataset(clean, seed=0)['test']['label'].to_numpy()
print('accuracy', classification_metrics(y, y, list(range(10)))['accuracy'])
"""
    out = sh([str(core/'python'), '-c', code], tmp_path, env=user_env(core)).stdout
    assert 'NotAProject: ' in out and 'not inside a mlops-workbench project' in out, out
    assert 'accuracy 1.0' in out, out   # and no heavy import: none is installed here (light imports: test_package.py)
    assert list(tmp_path.iterdir()) == []    # no mlflow.db, no milvus.db in the working directory

def test_version_and_every_command_outside_a_project(core, tmp_path):
    version = ConfigParser(); version.read(REPO/'settings.ini')
    r = sh([str(core/'mlwb'), '--version'], tmp_path, env=user_env(core))
    assert r.stdout.strip() == f"mlwb (mlops-workbench) {version['DEFAULT']['version']}"
    assert sh([str(core/'mlwb'), '--help'], tmp_path, env=user_env(core)).stdout.startswith('usage: mlwb')
    for cmd in (['check'], ['run'], ['metrics'], ['history'], ['search', '--id', '1'], ['simulate'], ['ui']):
        r = sh([str(core/'mlwb'), *cmd], tmp_path, check=False, env=user_env(core))
        assert r.returncode == 1 and r.stdout == '', (cmd, r.stdout, r.stderr)
        assert len(r.stderr.splitlines()) == 1 and 'not inside a mlops-workbench project' in r.stderr, (cmd, r.stderr)
    assert list(tmp_path.iterdir()) == []

def test_check_runs_on_the_core_inside_a_project(core, tmp_path):
    for f in ('params.yaml', 'dvc.yaml', 'nbs/stages', 'mlops_workbench'):
        (shutil.copytree if (REPO/f).is_dir() else shutil.copy)(REPO/f, tmp_path/f)
    r = sh([str(core/'mlwb'), 'check'], tmp_path/'nbs', env=user_env(core))
    assert 'train: ' in r.stdout and 'deps cover' in r.stdout and 'lack' not in r.stdout, r.stdout
    # a command that needs a heavy extra names it
    r = sh([str(core/'mlwb'), 'history'], tmp_path, check=False, env=user_env(core))
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert 'mlwb: error: history needs mlflow' in r.stderr, r.stderr
    assert "pip install 'mlops-workbench[pipeline]'" in r.stderr, r.stderr
