"""Every operations command has a --help that helps."""
import pytest
from conftest import sh

@pytest.mark.parametrize('cmd', ['promote', 'rollback', 'history', 'card', 'simulate', 'monitor', 'retrain', 'loop'])
def test_ops_command_help(cmd, tmp_path):
    r = sh(['mlwb', cmd, '--help'], tmp_path)
    assert r.stdout.startswith(f'usage: mlwb {cmd}') and len(r.stdout.splitlines()) > 3
