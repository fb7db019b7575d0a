"""Build the docs site (`_site/`) from the notebooks, offline and without Quarto (`make docs`).

What goes in, whatever exists at build time:
  nbs/index.ipynb (home page), every library notebook nbs/NN_*.ipynb (reference), nbs/tutorials/*.ipynb,
  the executed pipeline reports reports/*.ipynb and the model cards reports/model_cards/*.md|*.html.
Steps:
  1. execute  library notebooks on the project kernel in nbs/ (as nbdev_test runs them), tutorials with papermill in
              a scratch copy of the repo (so they never touch this checkout's stores); both cached by content hash
              under _build/docs/exec/, so a warm build executes nothing. Reports are shown as the pipeline left them.
  2. process  nbdev's own processors (`nbdev.serve.proc_nbs`, what `nbdev_docs` runs before Quarto): hidden cells
              dropped, export cells replaced by their show_doc signatures, doc links added. Only the cells show_doc
              needs run again (exports, imports alone): examples and tests keep the outputs of step 1.
  3. convert  Quarto-flavoured processed notebooks -> plain notebooks for myst-nb: front matter -> title and
              <meta name=description>, `#|` directives -> hidden input/output, show_doc output -> page markdown,
              nbdev doc links -> relative links.
  4. render   Sphinx + myst-nb (no execution) with the furo theme: static HTML, offline search, no CDN.
Quarto users still have `nbdev_docs` (nbs/_quarto.yml, nbs/sidebar.yml)."""
import argparse, ast, concurrent.futures as cf, hashlib, json, os, re, shutil, subprocess, sys, tempfile, time
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tools'))
from testkit import clean_env, copy_repo, RESULTS   # scratch copies of the repo (tutorials run in one)
BIN = Path(sys.executable).parent
KERNEL = 'mlops-workbench'
_re_prefix = re.compile(r'^\d+[a-z]?_')
_re_directive = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')

def log(*a): print('docs:', *a, file=sys.stderr, flush=True)

def page_name(path:Path) -> str:
    "Output name of a notebook, as Quarto names it: the number prefix dropped (00_config.ipynb -> config)."
    return _re_prefix.sub('', path.stem)

def settings(root:Path=ROOT) -> dict:
    p = ConfigParser(); p.read(root/'settings.ini'); return dict(p['DEFAULT'])

# ---- 1. what exists ----------------------------------------------------------------------------------------------
def collect(root:Path=ROOT) -> dict:
    "The source files of each section of the site (missing sections are empty)."
    nbs, rep = root/'nbs', root/'reports'
    return dict(
        home=[nbs/'index.ipynb'] if (nbs/'index.ipynb').exists() else [],
        reference=sorted(p for p in nbs.glob('*.ipynb') if _re_prefix.match(p.name)),
        tutorials=sorted((nbs/'tutorials').glob('*.ipynb')),
        reports=sorted(rep.glob('*.ipynb')),
        cards=model_cards(rep/'model_cards'))

def model_cards(folder:Path) -> list:
    "One file per model card: `vN.md` where it exists (the pipeline writes .md and .html of each), else `vN.html`."
    found = {p.stem: p for p in sorted(folder.glob('*.html'))} | {p.stem: p for p in sorted(folder.glob('*.md'))}
    def natural(s): return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', s)]   # v2 before v10
    return [found[k] for k in sorted(found, key=natural)]

# ---- 2. execute (cached): tools/docs_exec.py ---------------------------------------------------------------------
from docs_exec import (execute_notebook, execute_tutorial, executed, _digest, _lib_sources, _pipeline_sources,   # noqa: F401
                       _eval_false)

# ---- 3. nbdev's processing ---------------------------------------------------------------------------------------
def _sync(src:Path, dest:Path, content:bytes|None=None):
    "Write `content` (default: src's) only when it differs (nbdev's processing cache goes by modification time)."
    data = src.read_bytes() if content is None else content
    if dest.exists() and dest.read_bytes() == data: return
    dest.parent.mkdir(parents=True, exist_ok=True); dest.write_bytes(data)

SHOW_DOC_DIRECTIVES = {'export', 'exports', 'exporti', 'exec_doc'}   # cells nbdev's processing runs for show_doc

def _rerun_only_for_imports(source:str) -> bool:
    """Whether nbdev's docs processing would run this code cell again only because it imports something: an example or
    test cell (imports and other statements), not an export, `exec_doc` or show_doc cell nor a cell of imports alone."""
    lines = source.splitlines()
    dirs = {m[1] for m in map(_re_directive.match, lines) if m}
    if dirs & (SHOW_DOC_DIRECTIVES | {'eval'}): return False
    code = '\n'.join(l for l in lines if not _re_directive.match(l) and not l.lstrip().startswith(('%', '!')))
    try: tree = ast.parse(code)
    except SyntaxError: return False
    if not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree)): return False
    if any(isinstance(t, ast.Expr) and isinstance(t.value, ast.Call) and getattr(t.value.func, 'id', '') == 'show_doc'
           for t in tree.body): return False
    return not all(isinstance(t, (ast.Import, ast.ImportFrom)) for t in tree.body)

def _no_rerun(nb_bytes:bytes) -> bytes:
    """An executed library notebook with `#| eval: false` on the cells that nbdev's `exec_show_docs` would otherwise run
    again (it runs every cell that imports something): their outputs are already in the copy, and running them again
    cost most of the processing step (examples and tests, a Ray runtime, MLflow stores). Signatures are unchanged: they
    come from the export cells, which still run."""
    nb = json.loads(nb_bytes)
    for c in nb['cells']:
        if c['cell_type'] == 'code' and _rerun_only_for_imports(''.join(c['source'])):
            c['source'] = ['#| eval: false\n'] + (c['source'] if isinstance(c['source'], list) else [c['source']])
    return json.dumps(nb, indent=1, ensure_ascii=False).encode()

def process(shown:dict, files:dict, root:Path, stage:Path, workers:int) -> dict:
    "Run nbdev's docs processors on staged copies; returns source -> processed notebook."
    rel = {}
    for src in files['home'] + files['reference']: rel[src] = Path(src.name)
    for src in files['tutorials']: rel[src] = Path('tutorials')/src.name
    for src in files['reports']: rel[src] = Path('reports')/src.name
    for src, r in rel.items():
        lib = src in files['home'] or src in files['reference']
        _sync(shown[src], stage/r, _no_rerun(shown[src].read_bytes()) if lib else None)
    from nbdev.serve import proc_nbs
    os.environ.setdefault('PYTHONWARNINGS', 'ignore:Found cells containing imports')   # nbdev's style hint, once per cell
    cwd = os.getcwd(); os.chdir(root)
    try: cache = Path(proc_nbs(path=str(stage), n_workers=workers))
    finally: os.chdir(cwd)
    return {src: cache/r for src, r in rel.items()}

# ---- 4. convert for myst-nb: tools/docs_convert.py -----------------------------------------------------------------
from docs_convert import (Links, convert, _split_directives, _front_matter, _anchor, _showdoc_md, _toctree,   # noqa: F401
                          _title_of_md, _src)

def write_sources(files:dict, procd:dict, shown:dict, src_dir:Path, cfg:dict, root:Path) -> dict:
    "The Sphinx source folder: converted notebooks, section index pages, model cards, conf.py. Returns page -> title."
    if src_dir.exists(): shutil.rmtree(src_dir)
    src_dir.mkdir(parents=True); links, pages = Links(cfg), {}
    for src in files['reference']:
        pages[page_name(src)] = convert(procd[src], src_dir/f'{page_name(src)}.ipynb', links, 0, fallback_title=page_name(src))
    # tutorials
    tut = []
    for src in files['tutorials']:
        note = '' if shown[src] != src else ('*This page shows the tutorial without its outputs (the site was built with '
                                             '`--tutorials skip`); `make docs` runs it in a scratch copy of the repo and shows the results.*')
        n = f'tutorials/{page_name(src)}'; pages[n] = convert(procd[src], src_dir/f'{n}.ipynb', links, 1, note, page_name(src)); tut.append(page_name(src))
    body = ('Notebooks that walk through the workbench end to end. Each one runs as written: `make docs` executes them '
            'with papermill in a scratch copy of the repo (cached until a notebook, the library or the pipeline changes) '
            'and shows their outputs here; `make test` runs each one the same way.\n\n')
    (src_dir/'tutorials').mkdir(exist_ok=True)
    (src_dir/'tutorials'/'index.md').write_text('# Tutorials\n\n' + body + (_toctree('Tutorials', tut) if tut else 'No tutorials in `nbs/tutorials/` yet.\n'))
    pages['tutorials/index'] = 'Tutorials'
    # reports
    rep = []
    for src in files['reports']:
        n = f'reports/{src.stem}'
        pages[n] = convert(procd[src], src_dir/f'{n}.ipynb', links, 1, f'*Executed stage notebook `reports/{src.name}` as the last pipeline run left it.*', src.stem)
        rep.append(src.stem)
    body = ('The stage notebooks of the latest pipeline run (`reports/*.ipynb`), executed by papermill with the '
            'parameters in `params.yaml`, plots included.\n\n')
    (src_dir/'reports').mkdir(exist_ok=True)
    (src_dir/'reports'/'index.md').write_text('# Pipeline reports\n\n' + body + (_toctree('Reports', rep) if rep else
        '**No executed reports yet.** Run the pipeline (`make run`, or `mlwb run`), which writes `reports/*.ipynb`, then `make docs` again.\n'))
    pages['reports/index'] = 'Pipeline reports'
    # model cards
    cards = []
    (src_dir/'model_cards').mkdir(exist_ok=True)
    for src in files['cards']:
        text = src.read_text(encoding='utf-8'); n = src.stem
        if src.suffix == '.md': (src_dir/'model_cards'/f'{n}.md').write_text(text)
        else:
            body_html = re.search(r'<body[^>]*>(.*)</body>', text, re.S | re.I); body_html = body_html[1] if body_html else text
            t = _title_of_md(text, n)
            (src_dir/'model_cards'/f'{n}.md').write_text(f'# {t}\n\n```{{raw}} html\n{body_html}\n```\n')
        pages[f'model_cards/{n}'] = _title_of_md(text, n); cards.append(n)
    (src_dir/'model_cards'/'index.md').write_text('# Model cards\n\n' + (
        'One card per registered model version (`reports/model_cards/`): what it was trained on, how it scored, its lineage.\n\n' + _toctree('Model cards', cards)
        if cards else '**No model cards yet.** The pipeline writes them to `reports/model_cards/` when it registers a model version; run it, then `make docs` again.\n'))
    pages['model_cards/index'] = 'Model cards'
    # home page: the README notebook, with the site's contents at the end
    home = files['home'][0] if files['home'] else None
    if home: convert(procd[home], src_dir/'index.ipynb', links, 0, fallback_title=cfg.get('title', 'Home'))
    else: (src_dir/'index.ipynb').write_text(json.dumps(dict(cells=[dict(cell_type='markdown', metadata={}, source=f"# {cfg.get('title')}")], metadata={}, nbformat=4, nbformat_minor=5)))
    nb = json.loads((src_dir/'index.ipynb').read_text())
    toc = '## Contents\n\n' + _toctree('Library reference', [page_name(p) for p in files['reference']]) + '\n' + _toctree(
        'Guides and results', ['tutorials/index', 'reports/index', 'model_cards/index'])
    nb['cells'].append(dict(cell_type='markdown', metadata={}, source=toc))
    (src_dir/'index.ipynb').write_text(json.dumps(nb, indent=1))
    pages['index'] = cfg.get('title', 'Home')
    (src_dir/'conf.py').write_text(CONF.format(title=cfg.get('title', 'docs'), author=cfg.get('author', ''), copyright=cfg.get('copyright', ''),
                                              description=cfg.get('description', '').replace("'", "\\'")))
    return pages

CONF = """# generated by tools/build_docs.py
project = '{title}'
author = '{author}'
copyright = '{copyright}'
extensions = ['myst_nb']
language = 'en'
html_theme = 'furo'
html_title = '{title}'
html_short_title = '{title}'
html_theme_options = {{'navigation_with_keys': True}}
html_show_sourcelink = False
html_copy_source = False
html_meta = {{'description': '{description}'}}
nb_execution_mode = 'off'            # notebooks arrive executed (tools/build_docs.py step 1)
nb_merge_streams = True
myst_enable_extensions = ['colon_fence', 'deflist']
myst_heading_anchors = 3
suppress_warnings = ['myst.header', 'mystnb.unknown_mime_type', 'misc.highlighting_failure']
exclude_patterns = ['_build', '**.ipynb_checkpoints']
"""

def render(src_dir:Path, out:Path, doctrees:Path, workers:int):
    r = subprocess.run([str(BIN/'sphinx-build'), '-q', '-b', 'html', '-j', str(workers), '-d', str(doctrees), str(src_dir), str(out)],
                       capture_output=True, text=True)
    warnings = [l for l in r.stderr.splitlines() if 'WARNING' in l or 'ERROR' in l]
    for w in warnings[:30]: log(w)
    if r.returncode != 0: raise RuntimeError(f"sphinx-build failed:\n{r.stderr[-4000:]}")
    return warnings

def build(out:Path=ROOT/'_site', root:Path=ROOT, tutorials:str='execute', executed_dir:Path|None=None, workers:int=2,
          cache:Path|None=None) -> dict:
    "Build the site into `out` (executions cached in `cache`, default `root`/_build/docs/exec); returns a summary."
    t0 = time.monotonic(); work = root/'_build'/'docs'; cfg = settings(root)
    files = collect(root)
    shown = executed(files, root, cache or work/'exec', tutorials, executed_dir, workers)
    t1 = time.monotonic(); log(f"2/4 process: {len(shown)} notebooks through nbdev's docs processors")
    procd = process(shown, files, root, work/'stage', workers)
    log(f"  processed in {time.monotonic() - t1:.0f} s")
    log(f"3/4 convert: {len(procd)} notebooks and {len(files['cards'])} model card file(s) to Sphinx pages")
    pages = write_sources(files, procd, shown, work/'src', cfg, root)
    tmp = work/'html'   # myst-nb writes its jupyter_execute/ beside the Sphinx output folder: keep both under _build/
    if tmp.exists(): shutil.rmtree(tmp)
    t1 = time.monotonic(); log(f"4/4 render: {len(pages)} pages with Sphinx + myst-nb")
    warnings = render(work/'src', tmp, work/'doctrees', workers)
    log(f"  rendered in {time.monotonic() - t1:.0f} s")
    (tmp/'.nojekyll').touch()
    if out.exists(): shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True); shutil.move(str(tmp), str(out))
    return dict(pages=pages, seconds=round(time.monotonic() - t0, 1), warnings=warnings, out=out)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog='Open <out>/index.html in a browser, or serve it: python -m http.server -d _site')
    p.add_argument('--out', type=Path, default=ROOT/'_site', help='output folder (default: _site/)')
    p.add_argument('--tutorials', choices=['execute', 'skip'], default='execute',
                   help='execute the tutorials in a scratch copy of the repo (cached), or show them without outputs')
    p.add_argument('--executed', type=Path, help='take executed tutorials from this folder (same file names) instead')
    p.add_argument('--clean', action='store_true', help='forget cached executions and processing first (a cold build)')
    p.add_argument('-j', '--workers', type=int, default=2, help='parallel notebook executions and Sphinx workers')
    p.add_argument('--execute-only', action='store_true',
                   help='step 1 for the library notebooks only, into the cache (`make test-nbs`: fails when a notebook fails)')
    a = p.parse_args(argv)
    if a.clean:
        for d in (ROOT/'_build'/'docs', ROOT/'_proc'): shutil.rmtree(d, ignore_errors=True)
    if a.execute_only:
        files = {**collect(ROOT), 'tutorials': [], 'reports': []}
        try: executed(files, ROOT, ROOT/'_build'/'docs'/'exec', 'skip', None, a.workers)
        except RuntimeError as e: print(f"build_docs: error: {e}", file=sys.stderr); return 1
        return 0
    try: r = build(a.out.resolve(), ROOT, a.tutorials, a.executed.resolve() if a.executed else None, a.workers)
    except RuntimeError as e: print(f"build_docs: error: {e}", file=sys.stderr); return 1
    log(f"{len(r['pages'])} pages in {r['seconds']} s -> {r['out'].relative_to(ROOT) if r['out'].is_relative_to(ROOT) else r['out']}/index.html"
        + (f" ({len(r['warnings'])} Sphinx warnings)" if r['warnings'] else ''))
    return 0

if __name__ == '__main__': sys.exit(main())
