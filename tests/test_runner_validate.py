"""A rejected run leaves every earlier result in place: bad params, bad values and missing input files are refused
before DVC deletes anything (`mlwb run`, what `make run` calls), and a stage that refuses its input under a direct
`dvc repro` leaves its previous outputs too (every output is `persist: true`)."""
import hashlib
import pytest
from conftest import sh, set_params

def tree(root) -> dict:
    "sha256 of every file in the project but git's and DVC's own lock state."
    def keep(p):
        rel = p.relative_to(root).parts
        return p.is_file() and not p.is_symlink() and rel[:1] != ('.git',) and rel[:2] != ('.dvc', 'tmp')
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*')) if keep(p)}

BAD = {   # params, then what the one-line error must say
    'unknown key': (dict(train={'lerning_rate': 0.01}),
                    'train.lerning_rate is not a parameter of nbs/stages/train.ipynb'),
    'missing source': (dict(prepare={'source': 'data/raw/gone.csv'}),
                       "prepare.source = 'data/raw/gone.csv': no such file"),
    'empty source': (dict(prepare={'source': 'empty.csv'}), "prepare.source = 'empty.csv': empty file"),
    'bad values': (dict(train={'backend': 'rayy', 'device': 'gpu0'}, prepare={'test_size': 5}),
                   "prepare.test_size = 5: not in (0, 1); "
                   "train.device = 'gpu0': not one of: auto, cpu, cuda, cuda:<int>; "
                   "train.backend = 'rayy': not one of: auto, local, ray (did you mean 'ray'?)"),
}

@pytest.mark.parametrize('cmd', ['mlwb run', 'dvc repro'])
@pytest.mark.parametrize('case', list(BAD))
def test_rejected_run_leaves_every_output_in_place(project, case, cmd):
    params, msg = BAD[case]
    before, saved = tree(project), (project/'params.yaml').read_bytes()
    (project/'empty.csv').touch()
    try:
        set_params(project, **params)
        r = sh(cmd, project, check=False, timeout=600)
        if cmd == 'dvc repro' and case == 'unknown key':   # DVC does not track an undeclared key: nothing runs
            assert r.returncode == 0 and 'Data and pipelines are up to date' in r.stdout
        else:   # a direct dvc repro: the first stage that runs refuses its own params (the first problem)
            want = msg if cmd == 'mlwb run' else msg.split('; ')[0]
            assert r.returncode != 0 and want in r.stderr, r.stderr[-3000:]
        if cmd == 'mlwb run':   # refused up front: one line, no stage started
            assert r.stderr.strip().splitlines()[-1].startswith('mlwb: error: ') and 'Running stage' not in r.stdout
            c = sh(['mlwb', 'check'], project, check=False)
            assert c.returncode == 1 and msg in c.stderr
    finally:
        (project/'params.yaml').write_bytes(saved)
        (project/'empty.csv').unlink()
    assert tree(project) == before
    assert not list((project/'reports').glob('.tmp-*'))

def test_reports_carry_no_noise(project):
    "Executed reports hold no torch read-only-array warning, no Milvus Lite gRPC traceback, no TCP-kernel warning."
    import json
    for rep in sorted((project/'reports').glob('*.ipynb')):
        outs = [o for c in json.loads(rep.read_text())['cells'] for o in c.get('outputs', [])]
        text = ''.join(''.join(o.get('text', '')) for o in outs if o.get('name') == 'stderr')
        for noise in ('is not writable', 'NotImplementedError', 'Kernel is running over TCP'):
            assert noise not in text, (rep.name, noise)
