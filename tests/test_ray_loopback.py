"""Ray listens on loopback only (issue 8.3): every listening socket of the scale-out tutorial's run (03) - the 2-node
cluster that `start_cluster` makes, with the sweep's trials and the 2-worker Ray Train group (its torch process group)
on it, the MLflow and Milvus servers, the stages as Ray drivers - was on 127.0.0.1/::1, sampled every 0.3 s while the
tutorial ran (tests/conftest.py `LISTEN_SAMPLED`: its processes carry a mark in their environment); and when the
tutorial had stopped them (`stop_cluster`), none was left. The run's shared runtime of a pipeline run is checked in
test_ray_stages.py; that `stop_cluster` stops no other cluster in test_ray_leftovers.py."""
import json
from testkit import LOOPBACK
from conftest import tutorial_root

def test_scale_out_run_listens_on_loopback_only(tutorial_runs):
    tutorial_root(tutorial_runs, '03_scale_out.ipynb')   # the tutorial's own error, if it failed
    nb, _ = tutorial_runs('03_scale_out.ipynb')
    rec = json.loads((nb.parent/'listening.json').read_text())
    names = {name for name, _, _ in rec['seen']}
    assert {'gcs_server', 'raylet'} <= names, rec['seen']
    assert not [s for s in rec['seen'] if s[1] not in LOOPBACK], rec['seen']   # before: the nodes' servers on * and the host's address
    raylets = {pid for pid, name in rec['procs'] if name == 'raylet'}
    # both nodes were sampled (on failure: each raylet's command line names its node's folder and ports)
    assert len(raylets) == 2, [c[:400] for c in rec['cmdlines'] if c.split(' ')[0].endswith('raylet')] or rec['procs']
    workers = [c for c in rec['cmdlines'] if 'RayTrainWorker' in c]
    assert len(workers) >= 2, [c for c in rec['cmdlines'] if c.startswith('ray::')]   # the 2-worker group (gloo listens)
    assert any('mlflow' in c and 'server' in c for c in rec['cmdlines']) and any('milvus-server' in c for c in rec['cmdlines'])
    assert rec['left'] == []   # stop_cluster (and the tutorial's stop_all) stopped every process of the run
