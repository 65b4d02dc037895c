"""Python start-up time with and without the metaf2n_autoload hook, measured side by side.

The hook runs in every Python process of the environment, so it must cost (almost) nothing until
``basicsr`` is imported. Runs of ``python -c pass`` alternate between the hook switched on and off
(``METAF2N_NO_AUTOLOAD=1``) so that machine noise hits both alike; the medians and their ratio are
printed. Target: ratio <= 1.05 (``--check`` exits 1 above it).

    python bench/startup.py [--runs 60] [--check]
"""
import os
import statistics
import subprocess
import sys
import time

from metaf2n_plugin.cli import parser_from_doc

TARGET = 1.05


def startup_seconds(env):
    start = time.perf_counter()
    subprocess.run([sys.executable, '-c', 'pass'], env=env, check=True)
    return time.perf_counter() - start


def main():
    parser = parser_from_doc(__doc__)
    parser.add_argument('--runs', type=int, default=60, help='runs of each variant')
    parser.add_argument('--check', action='store_true', help=f'exit 1 if the ratio exceeds {TARGET}')
    args = parser.parse_args()

    with_hook = {k: v for k, v in os.environ.items() if k != 'METAF2N_NO_AUTOLOAD'}
    without_hook = dict(with_hook, METAF2N_NO_AUTOLOAD='1')
    probe = subprocess.run([sys.executable, '-X', 'importtime', '-c', 'pass'],
                           env=with_hook,
                           capture_output=True,
                           text=True,
                           check=True)
    if 'metaf2n_autoload' not in probe.stderr:
        sys.exit(f'{sys.executable} does not load the hook: install the plugin first (make install)')

    timings = {'with': [], 'without': []}
    for _ in range(args.runs):
        timings['with'].append(startup_seconds(with_hook))
        timings['without'].append(startup_seconds(without_hook))
    med = {k: statistics.median(v) for k, v in timings.items()}
    ratio = med['with'] / med['without']
    print(f'python -c pass, median of {args.runs} alternating runs ({sys.executable})')
    print(f'  without hook  {med["without"] * 1e3:7.2f} ms')
    print(f'  with hook     {med["with"] * 1e3:7.2f} ms')
    print(f'  ratio         {ratio:7.3f}  (target <= {TARGET})')
    if args.check and ratio > TARGET:
        sys.exit(1)


if __name__ == '__main__':
    main()
