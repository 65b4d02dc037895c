"""Per-dataset results table of a BasicSR test run: ``metrics.md`` and ``metrics.csv`` in its results folder.

    # writes results/<name>/test_<name>_<time>.log
    python -m basicsr.test -opt options/<test>.yml
    # writes results/<name>/metrics.{md,csv}
    python scripts/results_table.py results/<name>

It reads the ``Validation <dataset>`` blocks that BasicSR's models log (one ``# <metric>: <value>`` line per
``val.metrics`` key, 4 decimals) from the folder's newest ``test_*.log``, or from ``--log``. One row per
dataset; one column per metric key, PSNR, SSIM, LPIPS, FID and NIQE first. A metric ``<m>_unadapted`` is
the same metric of the un-adapted network's output (how the MetaF2N model reports it): it goes next to
``<m>``, followed by the delta ``<m>_delta = <m> - <m>_unadapted``. A run without such metrics (e.g.
BasicSR's SRModel) gets the metric columns alone. Both files are replaced atomically.
"""
import csv
import glob
import io
import os
import re

from metaf2n_plugin.atomic_write import write_atomically
from metaf2n_plugin.cli import parser_from_doc
from metaf2n_plugin.names import DELTA, METRICS_CSV, METRICS_MD, UNADAPTED

# known metric key -> (which way is better, decimals in metrics.md); also their column order
KNOWN = {'psnr': ('↑', 2), 'ssim': ('↑', 4), 'lpips': ('↓', 4), 'fid': ('↓', 2), 'niqe': ('↓', 2)}
BLOCK_START = re.compile(r'INFO: Validation (.+)$')
METRIC_LINE = re.compile(r'^\t # (\S+): (\S+?)(?:\t|$)')


def read_metrics(log_path):
    """``{dataset: {metric: value}}`` from a BasicSR log, in logged order; a dataset logged twice keeps the last."""
    results, dataset = {}, None
    with open(log_path, encoding='utf-8') as log:
        for line in log:
            line = line.rstrip('\n')
            start, value = BLOCK_START.search(line), METRIC_LINE.match(line)
            if start:
                dataset = start[1]
                results[dataset] = {}
            elif value and dataset is not None:
                results[dataset][value[1]] = float(value[2])
            else:
                dataset = None
    return {dataset: metrics for dataset, metrics in results.items() if metrics}


def columns_of(results):
    """Column keys: each metric, then ``<m>_unadapted`` and ``<m>_delta`` where the unadapted one was logged."""
    logged = list(dict.fromkeys(name for metrics in results.values() for name in metrics))
    bases = list(dict.fromkeys(name.removesuffix(UNADAPTED) for name in logged))
    bases.sort(key=lambda base: list(KNOWN).index(base) if base in KNOWN else len(KNOWN))
    return [
        column for base in bases
        for column in ((base, base + UNADAPTED, base + DELTA) if base + UNADAPTED in logged else (base, ))
    ]


def cell(metrics, column):
    """The value of ``column`` for one dataset, or None where it was not logged."""
    if column.endswith(DELTA):
        base = column.removesuffix(DELTA)
        if base in metrics and base + UNADAPTED in metrics:
            return metrics[base] - metrics[base + UNADAPTED]
        return None
    return metrics.get(column)


def to_csv(results, columns):
    """CSV text: header ``dataset,<column keys>``, values with the log's 4 decimals, empty where missing."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator='\n')
    writer.writerow(['dataset', *columns])
    for dataset, metrics in results.items():
        values = [cell(metrics, column) for column in columns]
        writer.writerow([dataset, *('' if value is None else f'{value:.4f}' for value in values)])
    return text.getvalue()


def to_markdown(results, columns, source):
    """Markdown table: PSNR ↑ / PSNR unadapted / Δ PSNR ..., per-metric decimals, '–' where missing."""

    def header(column):
        base = column.removesuffix(UNADAPTED).removesuffix(DELTA)
        if column.endswith(UNADAPTED):
            return f'{base.upper()} unadapted'
        if column.endswith(DELTA):
            return f'Δ {base.upper()}'
        return f'{base.upper()} {KNOWN[base][0]}' if base in KNOWN else base.upper()

    def formatted(value, column):
        base = column.removesuffix(UNADAPTED).removesuffix(DELTA)
        decimals = KNOWN[base][1] if base in KNOWN else 4
        return '–' if value is None else f'{value:{"+" if column.endswith(DELTA) else ""}.{decimals}f}'

    lines = ['| dataset | ' + ' | '.join(header(column) for column in columns) + ' |', '|---|' + '---:|' * len(columns)]
    for dataset, metrics in results.items():
        lines.append(f'| {dataset} | ' + ' | '.join(formatted(cell(metrics, c), c) for c in columns) + ' |')
    note = 'Δ = adapted − unadapted. ' if any(column.endswith(DELTA) for column in columns) else ''
    return '\n'.join(lines) + f'\n\n{note}From `{source}`.\n'


def main(argv=None):
    parser = parser_from_doc(__doc__)
    parser.add_argument('run_dir', help='results/<name> of a `python -m basicsr.test` run; the tables go there')
    parser.add_argument('--log', help='the log to read (default: the newest test_*.log in run_dir)')
    args = parser.parse_args(argv)
    log = args.log
    if log is None:
        logs = sorted(glob.glob(os.path.join(args.run_dir, 'test_*.log')))
        if not logs:
            parser.error(f'no test_*.log in {args.run_dir}: run `python -m basicsr.test -opt <options>` first, '
                         'or give the log with --log')
        log = logs[-1]
    results = read_metrics(log)
    if not results:
        parser.error(f'{log} has no validation metrics: list them under val.metrics in the test options')
    columns = columns_of(results)
    for name, text in ((METRICS_CSV, to_csv(results,
                                            columns)), (METRICS_MD, to_markdown(results, columns,
                                                                                os.path.basename(log)))):
        write_atomically(os.path.join(args.run_dir, name), text)
        print(os.path.join(args.run_dir, name))


if __name__ == '__main__':
    main()
