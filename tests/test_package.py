"""The package: light import, thin stage notebooks consistent with params.yaml and dvc.yaml, CLI help, and a wheel that works without nbs/."""
import ast, json, os, shutil, subprocess, sys, sysconfig, venv
from pathlib import Path
import pytest, yaml
from conftest import REPO, sh, py, clean_env

HEAVY = ('torch', 'ray', 'mlflow', 'pymilvus', 'papermill', 'dvc', 'scipy')

def test_import_is_light_and_does_nothing(tmp_path):
    "The one check that imports stay light (the wheel's core venv has no heavy package to import: test_package_wheel.py)."
    code = ("import sys, mlops_workbench, mlops_workbench.config, mlops_workbench.data, mlops_workbench.evaluate, mlops_workbench.stages, "
            "mlops_workbench.cli, mlops_workbench.registry, mlops_workbench.gate, mlops_workbench.cards, mlops_workbench.batches, "
            "mlops_workbench.monitor, mlops_workbench.loop, mlops_workbench.checks, mlops_workbench.drift; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    assert py(code, tmp_path, fresh=True).stdout.strip() == '[]'
    assert list(tmp_path.iterdir()) == []     # no folder, file or store created at import

def stage_notebooks():
    return sorted((REPO/'nbs'/'stages').glob('*.ipynb'))

def _imports(cells) -> set:
    "The mlops_workbench modules that a notebook's code cells import."
    imported = set()
    for c in cells:
        if c['cell_type'] != 'code': continue
        for n in ast.walk(ast.parse(''.join(c['source']))):
            if isinstance(n, ast.ImportFrom) and n.module == 'mlops_workbench': imported |= {a.name for a in n.names}
            elif isinstance(n, ast.ImportFrom) and (n.module or '').startswith('mlops_workbench.'): imported.add(n.module.split('.')[1])
    return imported

@pytest.mark.parametrize('nb', stage_notebooks(), ids=lambda p: p.stem)
def test_stage_notebook_is_thin_and_consistent(nb):
    from mlops_workbench.stages import notebook_parameters
    cells = json.loads(nb.read_text())['cells']
    assert cells[0]['cell_type'] == 'markdown' and '**Reads**' in ''.join(cells[0]['source']) and '**Writes**' in ''.join(cells[0]['source'])
    for c in cells:
        if c['cell_type'] == 'code':
            tree = ast.parse(''.join(c['source']))
            assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))], 'stage notebooks define no functions'
    declared = notebook_parameters(nb)
    params, dvc = yaml.safe_load((REPO/'params.yaml').read_text()), yaml.safe_load((REPO/'dvc.yaml').read_text())
    stage = dvc['stages'][nb.stem]
    assert set(params[nb.stem]) == set(declared)
    assert {p.split('.', 1)[1] for p in stage['params'] if p.startswith(nb.stem + '.')} == set(declared)
    assert f'nbs/stages/{nb.stem}.ipynb' in stage['deps'] and f'reports/{nb.stem}.ipynb' in [o if isinstance(o, str) else next(iter(o)) for o in stage['outs']]
    assert stage['cmd'] == f'mlwb stage {nb.stem}'
    # a stage that writes to MLflow or Milvus must never be restored from DVC's run-cache instead of running
    if {'tracking', 'vectors'} & set(_imports(cells)):
        outs = [o for k in ('outs', 'metrics', 'plots') for o in stage.get(k, [])]
        assert any(isinstance(o, dict) and next(iter(o.values())).get('persist') for o in outs), f'{nb.stem} needs a persist: true output'
    # deps name the library code the notebook runs (config only locates paths and is left out on purpose)
    imported = _imports(cells)
    assert imported - {'config'} <= {Path(d).stem for d in stage['deps'] if d.startswith('mlops_workbench/')}, imported

def test_parameters_tag_survives_nbdev_clean(tmp_path):
    nb = tmp_path/'prepare.ipynb'; shutil.copy(REPO/'nbs'/'stages'/'prepare.ipynb', nb)
    sh([str(Path(sys.executable).parent/'nbdev_clean'), '--fname', str(nb)], REPO)
    tags = [c.get('metadata', {}).get('tags') for c in json.loads(nb.read_text())['cells']]
    assert ['parameters'] in tags

@pytest.mark.parametrize('cmd', [[], ['run'], ['stage'], ['check'], ['metrics'], ['search'], ['milvus-server'], ['ui']])
def test_every_command_has_help(cmd, tmp_path):
    r = sh(['mlwb', *cmd, '--help'], tmp_path)
    assert r.stdout.startswith('usage: mlwb') and len(r.stdout.splitlines()) > 3

REQUIREMENTS_MET = r"""
import json, sys
from importlib.metadata import distribution, version, PackageNotFoundError
from packaging.requirements import Requirement
wheel = distribution('mlops-workbench')
unmet = []
for line in wheel.requires:
    r = Requirement(line)
    if r.marker and not any(r.marker.evaluate({'extra': e}) for e in ('', 'pipeline', 'train')): continue
    try: v = version(r.name)
    except PackageNotFoundError: v = None
    if v is None or not r.specifier.contains(v, prereleases=True): unmet.append(f'{line} (found {v})')
print(json.dumps(dict(at=str(wheel.locate_file('')), n=len(wheel.requires), unmet=unmet)))
"""

@pytest.mark.slow   # a venv with the wheel, over this venv's pinned packages
def test_wheel_installs_and_works_without_notebooks(tmp_path):
    """The built wheel, installed into a venv of its own, works outside any project with its pipeline and train extras.
    Its dependencies come from this venv (a .pth line), pinned by constraints.txt as `make install` resolved them: the
    check is that the wheel's declared requirements for those extras are all met there, at their versions (resolving
    them from the index again cost ~100 CPU-s of pip per run; `make install` resolves the same requirements)."""
    dist = tmp_path/'dist'
    sh([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(dist), str(REPO)], tmp_path)
    wheel = next(dist.glob('mlops_workbench-*.whl'))
    venv.create(tmp_path/'venv', with_pip=False)
    vpy = tmp_path/'venv'/'bin'/'python'
    user = {k: v for k, v in clean_env(PATH=f"{tmp_path/'venv'/'bin'}:/usr/bin:/bin").items() if k != 'PYTHONPATH'}   # not a checkout's code
    sh([sys.executable, '-m', 'pip', '--python', str(vpy), 'install', '-q', '--disable-pip-version-check', '--no-deps',
        '--no-compile', str(wheel)], tmp_path, env=user)
    # after the install (pip must not see this venv's editable checkout as installed there): a .pth line adds a folder
    # to sys.path without running that folder's own .pth files, so the editable finder of the checkout stays out
    site = next((tmp_path/'venv'/'lib').glob('python*/site-packages'))
    (site/'zz_pinned_dependencies.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    met = json.loads(sh([str(vpy), '-c', REQUIREMENTS_MET], tmp_path, env=user).stdout.strip().splitlines()[-1])
    assert Path(met['at']).resolve() == site.resolve() and met['n'] > 10, met   # the wheel's own metadata, not the checkout's
    assert met['unmet'] == [], met['unmet']
    work = tmp_path/'elsewhere'; work.mkdir()     # no nbs/, no params.yaml, no repo
    code = r"""
import sys, numpy as np, mlops_workbench
assert mlops_workbench.__file__.startswith(sys.prefix), (mlops_workbench.__file__, sys.prefix)   # the wheel, not the checkout
from mlops_workbench.config import load_config
from mlops_workbench.data import ingest, Schema, split_dataset, to_arrays
from mlops_workbench.train import seed_everything, build_model, train_model, embed
from mlops_workbench.tracking import stage_run, log_metrics, load_torch_model
from mlops_workbench.registry import register_model
from mlops_workbench import vectors
cfg = load_config('.')     # no project here: the root is named explicitly (load_config() alone refuses)
clean, rej, schema = ingest('digits', Schema())
splits = split_dataset(clean, seed=0); meta = dict(classes=list(range(10)), features=schema.features)
(X, y), (Xv, yv) = to_arrays(splits['train'], meta), to_arrays(splits['val'], meta)
seed_everything(0, 1); m = build_model('mlp', 64, 10, [16])
with stage_run('train', {'epochs': 3}, 'fp', cfg=cfg) as (c, rid):
    h = train_model(m, X, y, Xv, yv, epochs=3, lr=1e-2, progress=False); log_metrics(c, rid, h); mv = register_model(m, X[:3], rid, cfg=cfg)
back = load_torch_model(mv.version, cfg)
cl = vectors.connect(cfg); vectors.create_collection(cl, 'c', 16)
E = embed(back, X)
vectors.insert_embeddings(cl, 'c', E, dict(id=splits['train']['id'], label=splits['train']['label'], split='train', prediction=0, model_version=1, run_id=rid, data_fingerprint='fp'), progress=False)
print(vectors.search(cl, 'c', E[:1], 1)[0][0]['id'] == str(splits['train']['id'][0]), h[-1]['val_accuracy'] > 0.5)
"""
    r = sh([str(vpy), '-c', code], work, env=user)
    assert r.stdout.split()[-2:] == ['True', 'True'], r.stdout
    assert sh([str(tmp_path/'venv'/'bin'/'mlwb'), '--help'], work).returncode == 0
