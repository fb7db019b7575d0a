"""Progress where a person waits (issue 14.6, install and docs): pip's output as one line per package through
tools/pip_progress.py (the Makefile's install step), and a line per notebook executed by the docs build."""
import re, subprocess, sys
from pathlib import Path
from conftest import REPO, clean_env

sys.path.insert(0, str(REPO/'tools'))
import build_docs

PIP = [sys.executable, '-m', 'pip', '--disable-pip-version-check']


def piped(pip_args: list, cwd=REPO) -> subprocess.CompletedProcess:
    "pip through the progress filter, as the Makefile runs it (bash, pipefail)."
    cmd = ' '.join([*PIP, *pip_args]) + f' | {sys.executable} tools/pip_progress.py'
    return subprocess.run(['bash', '-c', f'set -o pipefail; {cmd}'], cwd=cwd, capture_output=True, text=True,
                          env=clean_env(), timeout=600)


def test_makefile_install_shows_progress_per_step_and_package():
    mk = (REPO/'Makefile').read_text()
    recipe = mk.split('$(VENV)/.installed:', 1)[1].split('\ninstall:', 1)[0]
    assert not re.search(r'^PIP :=.*\s-q\b', mk, re.M), "pip is silent (-q) for minutes"
    assert 'set -o pipefail' in recipe and '$(PIP_PROGRESS)' in recipe
    assert 'PIP_PROGRESS := | $(BIN)/python tools/pip_progress.py' in mk
    steps = re.findall(r'==> install (\d)/(\d)', recipe)
    assert [int(a) for a, _ in steps] == list(range(1, len(steps) + 1)) and {b for _, b in steps} == {str(len(steps))}


def test_pip_progress_numbers_each_package():
    "A real resolution (dry run, nothing installed): one numbered line per package with the elapsed time, a total."
    r = piped(['install', '--dry-run', '--ignore-installed', '--progress-bar', 'off', '-c', 'constraints.txt',
               'jupyterlab'])
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    numbered = [l for l in lines if re.match(r'^  \[\s*\d+s\]\s+\d+ \S+', l)]
    assert len(numbered) > 30, r.stdout[-2000:]
    assert [int(l.split(']')[1].split()[0]) for l in numbered] == list(range(1, len(numbered) + 1))
    assert any(' jupyterlab' in l for l in numbered)
    assert re.search(r'would install \d+ packages', lines[-1]), lines[-3:]
    assert not [l for l in lines if 'Requirement already satisfied' in l or 'Looking in' in l]


def test_pip_failure_still_fails_and_is_shown():
    "The filter never hides an error: pip's status comes through the pipe and its message reaches the terminal."
    r = piped(['install', '--dry-run', '--no-index', 'no-such-package-mlwb==0.0.1'])
    assert r.returncode != 0
    assert 'no-such-package-mlwb' in r.stdout + r.stderr


def test_docs_build_says_each_notebook_it_executes(scratch, capfd):
    "tools/build_docs.py: a step line, a line as each notebook starts and ends (seconds); a warm build says cached."
    files = dict(home=[scratch/'nbs'/'index.ipynb'], reference=[], tutorials=[], reports=[], cards=[])
    cache = scratch/'_build'/'docs'/'exec'
    build_docs.executed(files, scratch, cache, 'skip', None, 1)
    err = capfd.readouterr().err
    assert 'docs: 1/4 execute: 1 notebook(s) to run' in err, err
    assert 'docs:   running nbs/index.ipynb ...' in err, err
    assert re.search(r'docs:   \[1/1\] executed nbs/index\.ipynb in \d+ s', err), err
    build_docs.executed(files, scratch, cache, 'skip', None, 1)
    assert 'docs: 1/4 execute: 0 notebook(s) to run, 1 at a time; 1 ready (cached or given)' in capfd.readouterr().err
