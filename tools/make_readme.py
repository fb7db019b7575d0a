"""Write README.md from nbs/index.ipynb (what `nbdev_readme` does, without Quarto, which can't be installed here).

Markdown cells are copied; code cells become ```python blocks followed by their text outputs. The nbdev
front matter (`# title` and `> description`) is kept as the README's heading."""
import json, sys
from pathlib import Path

def convert(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text(encoding='utf-8'))
    out = ["<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, then `make export`. -->\n"]
    for c in nb['cells']:
        src = ''.join(c['source']).strip()
        if not src or src.startswith('#|') and 'hide' in src.splitlines()[0]: continue
        if c['cell_type'] == 'markdown': out.append(src + '\n')
        elif c['cell_type'] == 'code':
            out.append(f"```python\n{src}\n```\n")
            for o in c.get('outputs', []):
                text = o.get('text') or o.get('data', {}).get('text/plain')
                if text: out.append("    " + ''.join(text).rstrip().replace('\n', '\n    ') + '\n')
    return '\n'.join(out)

if __name__ == '__main__':
    root = Path(__file__).resolve().parents[1]
    (root/'README.md').write_text(convert(root/'nbs'/'index.ipynb'), encoding='utf-8')
    print('wrote README.md', file=sys.stderr)
