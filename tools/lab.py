"""JupyterLab on this project (`make lab`): bound to 127.0.0.1, protected by a token, the project kernel
(`mlops-workbench`, installed by `make install`) the default for new and kernel-less notebooks, the file browser opened
in nbs/ (the rest of the repo, reports/ included, one level up); a notebook saved from Lab is cleaned by nbdev on
save (settings.ini `jupyter_hooks`), so the repo stays in sync for `make test`'s export/clean check.

The token is JUPYTER_TOKEN when set, else a fresh random one; it reaches Jupyter through the environment (never the
command line, which other users of the machine can read) and Jupyter prints it in the URL to open.
Extra arguments go to `jupyter lab` (e.g. --no-browser)."""
import argparse, os, secrets, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNEL = 'mlops-workbench'


def lab_command(port: int, root: Path = ROOT, extra: list | tuple = ()) -> list:
    "The `jupyter lab` command: loopback, the port, the repo as root with nbs/ opened, the project kernel by default."
    return [sys.executable, '-m', 'jupyterlab', '--ServerApp.ip=127.0.0.1', f'--ServerApp.port={port}',
            '--ServerApp.port_retries=0', f'--ServerApp.root_dir={root}', '--LabApp.default_url=/lab/tree/nbs',
            f'--MappingKernelManager.default_kernel_name={KERNEL}',
            f"--LabApp.app_settings_dir={root/'tools'/'jupyterlab'}",   # overrides.json: no news prompt or update check
            '--ContentsManager.pre_save_hook=nbdev.clean.clean_jupyter',   # saves are nbdev-clean (jupyter_hooks)
            *(['--allow-root'] if os.geteuid() == 0 else []),   # containers and CI run as root (refused without it)
            *extra]


def check_kernel() -> str:
    "The project kernel's folder; a clear error when it is not installed."
    from jupyter_client.kernelspec import KernelSpecManager
    specs = KernelSpecManager().find_kernel_specs()
    if KERNEL not in specs: raise SystemExit(f"lab: the Jupyter kernel '{KERNEL}' is not installed (`make install`)")
    return specs[KERNEL]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--port', type=int, default=8888, help='port on 127.0.0.1 (default 8888)')
    a, extra = p.parse_known_args(argv)
    check_kernel()
    env = dict(os.environ)
    if not env.get('JUPYTER_TOKEN'): env['JUPYTER_TOKEN'] = secrets.token_urlsafe(24)   # empty would mean no auth
    print(f"lab: http://127.0.0.1:{a.port}/lab/tree/nbs (open the URL with the token printed below; Ctrl-C stops it)",
          file=sys.stderr, flush=True)
    cmd = lab_command(a.port, ROOT, extra)
    os.execve(cmd[0], cmd, env)


if __name__ == '__main__': main()
