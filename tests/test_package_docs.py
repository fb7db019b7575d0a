"""Small docs defects (issue 14.8): each model card listed once; the quickstart names the stages that dvc.yaml has."""
import json, re
import yaml
from conftest import REPO
import build_docs

def test_each_model_card_is_collected_once(tmp_path):
    cards = tmp_path/'reports'/'model_cards'; cards.mkdir(parents=True)
    for f in ('v1.md', 'v1.html', 'v2.md', 'v2.html', 'v10.md', 'v10.html', 'v3.html'): (cards/f).write_text(f'# {f}\n')
    assert [p.name for p in build_docs.collect(tmp_path)['cards']] == ['v1.md', 'v2.md', 'v3.html', 'v10.md']

def test_quickstart_names_every_stage():
    stages = list(yaml.safe_load((REPO/'dvc.yaml').read_text())['stages'])
    for nb in ('nbs/tutorials/01_quickstart.ipynb', 'nbs/index.ipynb'):
        cells = json.loads((REPO/nb).read_text())['cells']
        text = ''.join(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown')
        chains = re.findall(r'`(\w+(?: → \w+)+)`', text)
        assert chains and all(c.split(' → ') == stages for c in chains), (nb, chains, stages)
