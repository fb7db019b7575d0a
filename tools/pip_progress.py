"""pip's output as progress (the Makefile pipes `pip install` through it): one line per package with the elapsed time,
the noise counted instead of shown. Reads pip's stdout on stdin; pip's exit status is the Makefile's (pipefail)."""
import re, sys, time

_name = re.compile(r'^(?:Collecting|Processing)\s+(\S+)')
QUIET = ('Requirement already satisfied', 'Using cached', 'Downloading', 'Looking in indexes', 'Looking in links',
         'Obtaining',
         'Installing build dependencies', 'Checking if build backend', 'Getting requirements to build', 'Preparing ',
         'Building wheels', 'Building editable', 'Created wheel', 'Stored in directory', 'Successfully built',
         'Attempting uninstall', 'Found existing installation', 'Uninstalling', 'Successfully uninstalled')


def _short(spec: str) -> str:
    "A package spec or a local wheel path as `name` (file paths are reduced to the wheel's name)."
    spec = spec.rsplit('/', 1)[-1]
    m = re.match(r'^([A-Za-z0-9_.]+?)-(\d[^-]*)-.*\.whl$', spec)
    return f'{m[1]}=={m[2]}' if m else spec


def progress(lines, out=sys.stdout, clock=time.monotonic) -> dict:
    "Turn pip's output lines into progress lines on `out`; returns the counts."
    t0, n, satisfied, seen = clock(), 0, 0, set()
    def say(msg): out.write(f'  [{clock() - t0:5.0f}s] {msg}\n'); out.flush()
    for line in lines:
        line = line.rstrip('\n')
        s = line.strip()
        m = _name.match(s)
        if m:
            name = _short(m[1])
            if name.split('==')[0].lower() not in seen:
                seen.add(name.split('==')[0].lower()); n += 1; say(f'{n:3d} {name}')
        elif s.startswith('Requirement already satisfied'): satisfied += 1
        elif s.startswith('Installing collected packages:'):
            say(f'installing {len(s.split(":", 1)[1].split(","))} packages (one step, no output until it ends)')
        elif s.startswith('Successfully installed'): say(f'installed {len(s.split()) - 2} packages')
        elif s.startswith('Would install'): say(f'would install {len(s.split()) - 2} packages')
        elif not s or s.startswith(QUIET): continue
        else: say(s)
    if satisfied: say(f'{satisfied} requirements already satisfied')
    return dict(collected=n, satisfied=satisfied)


if __name__ == '__main__':
    progress(sys.stdin)
