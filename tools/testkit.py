"""Scratch copies of the repo and the environment of a user who set nothing: what the tests (tests/conftest.py), the
benchmarks and the docs builder (tutorials run in a copy) share. No pytest here: plain functions."""
import os, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = ('dvc.lock', 'metrics/', 'plots/', 'models/', 'reports/')   # a run's results, recorded on another machine
STATE_ENV = ('MLFLOW_', 'MILVUS_', 'MLWB_', 'RAY_')                    # variables that point the workbench elsewhere

def clean_env(**extra) -> dict:
    "The environment of a user who set nothing: embedded backends, this venv first on PATH."
    env = {k: v for k, v in os.environ.items() if not k.startswith(STATE_ENV)}
    env['PATH'] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}

def copy_repo(dest:Path, root:Path=ROOT, skip:tuple=RESULTS) -> Path:
    "Copy the repo's tracked and unignored files (a clone plus uncommitted work, no results) into a fresh git repo."
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=root, capture_output=True,
                           text=True, check=True).stdout.split('\0')
    for f in filter(None, files):
        if f.startswith(skip) or not (root/f).is_file(): continue
        (dest/f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root/f, dest/f)
    for cmd in (['git', 'init', '-q', '-b', 'main'], ['git', 'add', '-A'],
                ['git', '-c', 'user.email=docs@localhost', '-c', 'user.name=docs', 'commit', '-qm', 'scratch copy']):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest

def copy_run(src:Path, # a repo copy on which the pipeline ran (its stores closed: no process holds Milvus Lite)
             dest:Path, # a folder that does not exist yet
            ) -> Path:
    "A copy of a pipeline run, results and stores included, re-based so that MLflow writes under `dest` (not `src`)."
    shutil.copytree(src, dest, symlinks=True, ignore=shutil.ignore_patterns('_site', '_build'))
    db = dest/'mlflow.db'
    if db.exists():   # the embedded store records absolute artifact locations: move them as a moved project would
        sys.path.insert(0, str(ROOT))
        from mlops_workbench.tracking import _relocate
        from mlops_workbench.config import load_config
        cfg = load_config(dest, env={})
        _relocate(db, cfg.experiment, cfg.artifact_root)
    return dest
