"""The scale-out tutorial, executed for real: a 2-node Ray cluster, an MLflow server and a Milvus server on loopback, the
pipeline run against them in a clone, and everything it started stopped again."""
import json
import psutil
from conftest import sh

def test_scale_out_tutorial_runs_and_leaves_nothing_running(scratch):
    before = {p.pid for p in psutil.process_iter()}
    sh(['papermill', '--kernel', 'mlops-workbench', '--cwd', str(scratch), 'nbs/tutorials/03_scale_out.ipynb', 'reports/tutorial-scale-out.ipynb'], scratch, timeout=900)
    nb = json.loads((scratch/'reports'/'tutorial-scale-out.ipynb').read_text())
    text = json.dumps([c.get('outputs', []) for c in nb['cells']])
    assert "'train backend': 'ray'" in text and 'rank' in text and 'digits-classifier' in text
    left = [p for p in psutil.process_iter(['cmdline']) if p.pid not in before and any(k in ' '.join(p.info['cmdline'] or []) for k in ('mlwb-rc-', 'mlflow server', 'milvus-server', 'milvus-lite'))]
    assert not left, [p.info['cmdline'] for p in left]
