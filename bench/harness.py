"""What bench/adapt.py and bench/metatrain.py share: every variant measured in a fresh process of its own.

A child process builds one configuration, runs a warm-up step, then ``repeats`` timed steps, and reports the
median time and its peak resident memory (``ru_maxrss``: what the process took from the machine, default
allocator, no environment tweaks). The parent alternates the variants, so that their ratios come from runs
made side by side on this noisy machine.
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

from metaf2n_plugin.cli import parser_from_doc


def arguments(doc, blocks=True):
    """The options every benchmark takes: ``--rounds``, ``--repeats``, ``--blocks`` (those of a random RRDBNet;
    ``blocks`` False: none), ``--check`` (and ``--child``)."""
    parser = parser_from_doc(doc)
    parser.add_argument('--rounds', type=int, default=2, help='times every variant runs, alternating')
    parser.add_argument('--repeats', type=int, default=2, help='timed steps per run, after a warm-up')
    if blocks:
        parser.add_argument('--blocks', type=int, default=23, help='RRDB blocks')
    parser.add_argument('--check', action='store_true', help='exit 1 when a target is missed')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    return parser


def flags(args, *names):
    """``['--<name>', '<value>', ...]`` of the options ``names`` (``tile_pad`` -> ``--tile-pad``), for a child."""
    return [text for name in names for text in ('--' + name.replace('_', '-'), str(getattr(args, name)))]


def measure(step, repeats, warmup=True):
    """Time ``step()`` ``repeats`` times (after one untimed call) and read the process's peak memory."""
    if warmup:
        step()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return {
        'seconds': statistics.median(seconds) if seconds else None,
        'runs': seconds,
        'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    }


def report(result):
    """The child's last line on stdout: its result as JSON."""
    print(json.dumps(result), flush=True)


def run_child(script, variant, args):
    """``python <script> --child <variant> <args>`` in a fresh process; its JSON result."""
    proc = subprocess.run([sys.executable, script, '--child', variant, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f'{variant} failed:\n{proc.stderr[-4000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def alternate(script, variants, rounds, args):
    """``{variant: [result per round]}``, the variants run one after another in every round."""
    results = {variant: [] for variant in variants}
    for r in range(rounds):
        for variant in variants:
            result = run_child(script, variant, args)
            results[variant].append(result)
            print(
                f'round {r + 1}/{rounds} {variant}: {fmt_seconds(result["seconds"])}, '
                f'peak RSS {result["peak_rss_mb"]:.0f} MB',
                file=sys.stderr,
                flush=True)
    return results


def paired_ratio(results, numerator, denominator):
    """Median over rounds of ``numerator / denominator``, each ratio from runs of the same round; and the list."""
    ratios = [a['seconds'] / b['seconds'] for a, b in zip(results[numerator], results[denominator])]
    return statistics.median(ratios), ratios


def median_of(results, key):
    values = [r[key] for r in results if r[key] is not None]
    return statistics.median(values) if values else None


def fmt_seconds(seconds):
    return '-' if seconds is None else f'{seconds:.2f} s'
