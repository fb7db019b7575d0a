"""A rerun with nothing new registers nothing new (issue 14.2): the train stage run with params A, then B, then A
again registers v1 and v2 only; the third run reuses v1 (linked by a tag), `models/model.json` points at v1 and its
run, and no role moves. Real papermill stages on a scratch copy of the repo."""
from conftest import sh, set_params, workbench

def state(root) -> dict:
    "Versions, roles, models/model.json, the audit log's length and the train run's reuse tag."
    from mlops_workbench.config import read_json
    from mlops_workbench.tracking import get_client
    from mlops_workbench import registry as R
    cfg = workbench(root); info = read_json(cfg.path('models', 'model.json'))
    return dict(versions=R.versions(cfg), roles=R.aliases(cfg), info=info, audit=len(R.read_audit(R.audit_path(cfg))),
                tags=get_client(cfg).get_run(info['train_run_id']).data.tags.get('mlwb.reuses_version'))

def train(root, lr):
    set_params(root, train={'lr': lr})
    sh(['mlwb', 'stage', 'train', '--no-progress'], root)
    return state(root)

def test_rerun_reuses_the_version(scratch):
    set_params(scratch, train={'use_sweep': False, 'epochs': 2})
    sh(['mlwb', 'stage', 'prepare', '--no-progress'], scratch)
    a = train(scratch, 0.01)
    assert a['versions'] == [1] and a['info']['model_version'] == 1 and not a['info']['reused'] and a['tags'] is None
    b = train(scratch, 0.02)
    assert b['versions'] == [1, 2] and b['roles'] == {'champion': 1, 'challenger': 2}
    again = train(scratch, 0.01)                                   # the param reverted: same weights, data and params
    assert again['versions'] == [1, 2]
    assert again['info']['model_version'] == 1 and again['info']['reused'] and again['tags'] == '1'
    assert again['info']['run_id'] == a['info']['run_id'] != again['info']['train_run_id']
    assert again['roles'] == b['roles'] and again['audit'] == b['audit']   # no role moved
