"""DVC's plots page, offline (`make plots`): Vega, Vega-Lite and Vega-Embed vendored from the npm registry, inlined
into an HTML template that `dvc plots show --html-template` fills, so the page loads nothing from the network.

  python tools/plots.py                 vendor (once), write the template, run `dvc plots show`, print the page's path
  python tools/plots.py --setup         vendor and point this checkout's DVC at the template (`dvc config --local`),
                                        so a plain `dvc plots show` is offline too (run by `make install`)
The vendored files live in .vendor/vega/ (ignored by git); the versions are the ones DVC's own page asks the CDN for,
each tarball checked against its npm integrity hash."""
import argparse, base64, hashlib, os, shutil, subprocess, sys, tarfile, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT/'.vendor'/'vega'
# package -> (version, file in the tarball, npm dist.integrity): the versions dvc-render's template loads from the CDN
PACKAGES = {
    'vega': ('5.20.2', 'package/build/vega.min.js',
             'sha512-qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw=='),
    'vega-lite': ('5.2.0', 'package/build/vega-lite.min.js',
                  'sha512-Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw=='),
    'vega-embed': ('6.18.2', 'package/build/vega-embed.min.js',
                   'sha512-wcDyQPE4J5aiCDc3/suH5RQDvrKkjuLkhzUcbOLwEkNF8/+pp17tS0JghzEvAPNRg+5aG1/N2ydixq8Lk3dOlg=='),
}
TEMPLATE_NAME = 'dvc-plots-template.html'


def log(*a): print('plots:', *a, file=sys.stderr, flush=True)


def _integrity(path: Path) -> str:
    "npm's dist.integrity of a tarball (sha512, base64)."
    return 'sha512-' + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def vendor(dest: Path = VENDOR, timeout: int = 300) -> Path:
    "Put vega, vega-lite and vega-embed (minified builds) in `dest`, fetched with `npm pack` unless already there."
    want = {name: dest/f'{name}@{v}.min.js' for name, (v, _, _) in PACKAGES.items()}
    if all(p.exists() for p in want.values()): return dest
    npm = shutil.which('npm')
    if not npm: raise RuntimeError("npm is not installed: it fetches Vega for the offline plots page (apt install npm)")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        specs = [f'{n}@{v}' for n, (v, _, _) in PACKAGES.items()]
        log(f"fetching {', '.join(specs)} from the npm registry")
        cmd = [npm, 'pack', '--silent', *specs]
        try: r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired: raise RuntimeError(f"`npm pack` ran over {timeout} s (registry unreachable?)")
        if r.returncode: raise RuntimeError(f"`npm pack {' '.join(specs)}`: {(r.stderr or r.stdout).strip()[-500:]}")
        for name, (v, member, integrity) in PACKAGES.items():
            tgz = Path(tmp)/f'{name}-{v}.tgz'
            got = _integrity(tgz)
            if got != integrity: raise RuntimeError(f"{tgz.name}: integrity {got[:30]}... is not {integrity[:30]}...")
            with tarfile.open(tgz) as t: js = t.extractfile(member).read()
            part = Path(tmp)/want[name].name
            part.write_bytes(js)
            os.replace(part, want[name])   # atomic: a killed fetch leaves no half file
    log(f"vendored into {dest}")
    return dest


PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC plots</title>
    <!-- vega, vega-lite and vega-embed inlined by tools/plots.py: this page loads nothing from the network -->
    %s
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def write_template(vendor_dir: Path = VENDOR, out: Path | None = None) -> Path:
    "The HTML template for `dvc plots show --html-template`, with the three libraries inlined (no `{scripts}`: no CDN)."
    out = out or vendor_dir/TEMPLATE_NAME
    scripts = []
    for name, (v, _, _) in PACKAGES.items():
        js = (vendor_dir/f'{name}@{v}.min.js').read_text(encoding='utf-8').replace('</script', '<\\/script')
        for ph in ('{plot_divs}', '{scripts}', '{refresh_tag}'):   # dvc-render replaces these anywhere in the page
            if ph in js: raise RuntimeError(f"{name}@{v} contains {ph}: cannot inline it in a DVC template")
        scripts.append(f'<script>/* {name}@{v} */\n{js}\n</script>')
    tmp = out.with_name(f'.tmp-{out.name}')
    tmp.write_text(PAGE % '\n'.join(scripts), encoding='utf-8')
    os.replace(tmp, out)
    return out


def show(root: Path = ROOT, out: Path | None = None, vendor_dir: Path = VENDOR, extra: tuple = ()) -> Path:
    "Run `dvc plots show` in `root` with the offline template; returns the page."
    template = write_template(vendor(vendor_dir))
    out = Path(out or root/'dvc_plots').resolve()
    dvc = shutil.which('dvc', path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get('PATH', ''))
    if not dvc: raise RuntimeError("dvc is not installed in this environment (run `make install`)")
    r = subprocess.run([dvc, 'plots', 'show', '--html-template', str(template), '-o', str(out), *extra],
                       cwd=root, capture_output=True, text=True)
    if r.returncode: raise RuntimeError(f"`dvc plots show` failed: {(r.stderr or r.stdout).strip()[-800:]}")
    page = out/'index.html'
    if not page.exists(): raise RuntimeError(f"`dvc plots show` wrote no {page}: {r.stdout.strip()[-300:]}")
    return page


def setup(root: Path = ROOT, vendor_dir: Path = VENDOR) -> Path:
    "Vendor the libraries and make this checkout's `dvc plots show` use the offline template (`.dvc/config.local`)."
    template = write_template(vendor(vendor_dir))
    dvc = shutil.which('dvc', path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get('PATH', ''))
    if not dvc: raise RuntimeError("dvc is not installed in this environment (run `make install`)")
    subprocess.run([dvc, 'config', '--local', 'plots.html_template', str(template)], cwd=root, check=True,
                   capture_output=True)
    return template


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--setup', action='store_true', help='vendor, set plots.html_template in .dvc/config.local, stop')
    p.add_argument('--vendor', type=Path, default=VENDOR, help='where the Vega libraries go (default: .vendor/vega)')
    p.add_argument('-o', '--out', type=Path, help='output folder (default: dvc_plots/)')
    p.add_argument('--root', type=Path, default=Path.cwd(), help='the DVC project (default: the current directory)')
    a, extra = p.parse_known_args(argv)
    try:
        if a.setup:
            log(f"`dvc plots show` in {a.root} uses {setup(a.root.resolve(), a.vendor.resolve())} (offline)")
        else:
            page = show(a.root.resolve(), a.out, a.vendor.resolve(), tuple(extra))
            print(f"plots: open {page} (works offline)")
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        print(f"plots: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__': sys.exit(main())
