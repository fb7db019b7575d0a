"""Every operations command has a --help that helps."""
import pytest
from conftest import sh

@pytest.mark.parametrize('cmd', ['promote', 'rollback', 'history', 'card', 'simulate', 'monitor', 'retrain', 'loop'])
def test_ops_command_help(cmd, tmp_path):
    r = sh(['mlwb', cmd, '--help'], tmp_path)
    assert r.stdout.startswith(f'usage: mlwb {cmd}') and len(r.stdout.splitlines()) > 3

def test_ops_modules_import_light(tmp_path):
    from conftest import py
    code = ("import sys, mlops_workbench.registry, mlops_workbench.gate, mlops_workbench.cards, mlops_workbench.batches, "
            "mlops_workbench.monitor, mlops_workbench.loop; print([m for m in ('torch', 'ray', 'mlflow', 'pymilvus', 'papermill', 'dvc', 'scipy') if m in sys.modules])")
    assert py(code, tmp_path).stdout.strip() == '[]'
    assert list(tmp_path.iterdir()) == []
