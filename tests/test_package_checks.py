"""`mlwb check` catches a stage whose dvc.yaml deps miss a library module that its notebook runs (issue 9.4)."""
import shutil
import yaml
from conftest import REPO, sh

def project_copy(dest):
    "The files `mlwb check` reads: params, pipeline, stage notebooks, library sources."
    for f in ('params.yaml', 'dvc.yaml', 'nbs/stages', 'mlops_workbench'):
        (shutil.copytree if (REPO/f).is_dir() else shutil.copy)(REPO/f, dest/f)
    return dest

def test_check_passes_on_the_repo(tmp_path):
    r = sh(['mlwb', 'check'], project_copy(tmp_path))
    stages = yaml.safe_load((REPO/'dvc.yaml').read_text())['stages']
    assert 'lack' not in r.stdout and r.stdout.count('deps cover') == len(stages), r.stdout

def test_check_names_a_dep_missing_through_an_indirect_import(tmp_path):
    root = project_copy(tmp_path)
    dvc = yaml.safe_load((root/'dvc.yaml').read_text())
    dvc['stages']['monitor']['deps'].remove('mlops_workbench/drift.py')     # imported only by monitor.py
    dvc['stages']['train']['deps'].remove('mlops_workbench/registry.py')    # imported by the notebook itself
    (root/'dvc.yaml').write_text(yaml.safe_dump(dvc, sort_keys=False))
    r = sh(['mlwb', 'check'], root, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = {l.split(':')[0]: l for l in r.stdout.splitlines() if 'dvc.yaml deps' in l}
    assert lines['monitor'] == 'monitor: dvc.yaml deps lack mlops_workbench/drift.py (via monitor -> drift)', lines
    assert lines['train'] == 'train: dvc.yaml deps lack mlops_workbench/registry.py (via registry)', lines
    assert 'lack' not in lines['evaluate']
