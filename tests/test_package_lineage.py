"""Lineage after a fresh clone's first run: the pipeline rewrites only files that DVC owns, and v1's commit tag is the
clone's commit (issue 14.5). A retrained version's tag, clean or `-dirty`: tests/test_retrain.py."""
from pathlib import Path
import yaml
from conftest import sh, workbench

def git(root: Path, *args):
    return sh(['git', '-c', 'user.email=t@localhost', '-c', 'user.name=t', *args], root)

def dvc_owned(root: Path) -> list:
    "dvc.lock and every output, metrics and plots file that a stage of dvc.yaml declares."
    stages = yaml.safe_load((root/'dvc.yaml').read_text())['stages']
    outs = [o if isinstance(o, str) else next(iter(o))
            for s in stages.values() for k in ('outs', 'metrics', 'plots') for o in s.get(k, [])]
    return ['dvc.lock', *outs]

def version_commits(root: Path) -> dict:
    "Registered version -> its `mlwb.git_commit` tag, read with MLflow from the copy's store."
    from mlops_workbench.tracking import get_client
    cfg = workbench(root)
    return {int(v.version): v.tags.get('mlwb.git_commit') for v in get_client(cfg).search_model_versions(f"name='{cfg.model_name}'")}

def head(root: Path) -> str:
    return git(root, 'rev-parse', 'HEAD').stdout.strip()

def test_first_run_dirties_nothing_but_dvc_outputs(project):
    "The session's pipeline run is a clone's first `mlwb run` (committed results present, small params committed: conftest)."
    changed = [l[3:] for l in git(project, 'status', '--porcelain', '--untracked-files=all').stdout.splitlines()]
    owned = dvc_owned(project)
    assert changed, 'the pipeline rewrote none of its committed outputs?'
    assert [f for f in changed if not any(f == o or f.startswith(o.rstrip('/') + '/') for o in owned)] == [], changed
    assert any(f.startswith('reports/model_cards/') for f in changed), changed   # the issue's case: v1's card rewritten
    assert version_commits(project) == {1: head(project)}
