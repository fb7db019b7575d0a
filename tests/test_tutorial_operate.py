"""The operate tutorial (nbs/tutorials/04_operate.ipynb), executed as written by papermill on the project's kernel in a
scratch copy of the repo with small params: the whole loop a reader would run."""
import json, sys
from conftest import REPO, copy_repo, set_params, sh, SMALL

NB = 'nbs/tutorials/04_operate.ipynb'

def test_tutorial_is_committed_clean_and_skipped_by_nbdev_test():
    assert (REPO/'nbs'/'tutorials'/'.notest').exists()
    cells = json.loads((REPO/NB).read_text())['cells']
    assert not [c for c in cells if c['cell_type'] == 'code' and (c.get('outputs') or c.get('execution_count'))]

def test_operate_tutorial_runs(tmp_path):
    root = copy_repo(tmp_path/'repo'); set_params(root, **SMALL)
    out = tmp_path/'executed.ipynb'
    sh([sys.executable, '-m', 'papermill', NB, str(out), '-k', 'mlops-workbench', '--cwd', 'nbs/tutorials', '--no-progress-bar'], root, timeout=1500)
    cells = [c for c in json.loads(out.read_text())['cells'] if c['cell_type'] == 'code']
    assert all(c['execution_count'] for c in cells)
    assert not [o for c in cells for o in c['outputs'] if o['output_type'] == 'error']
    assert any(o.get('data', {}).get('image/png') for c in cells for o in c['outputs']), 'the drift plot'
    text = ''.join(''.join(o.get('text', '') or o.get('data', {}).get('text/plain', '')) for c in cells for o in c['outputs'])
    assert 'b0002-rotate' in text and 'hash chain intact' in text and 'already rolled back: nothing changed' in text
    gate = json.loads((root/'metrics'/'gate.json').read_text())
    assert gate['challenger'] == 2 and gate['champion_before'] == 1
    h = json.loads(sh(['mlwb', 'history', '--json'], root).stdout)
    assert h['roles']['champion'] == 1 and h['history'][-1]['action'] == 'rollback'
