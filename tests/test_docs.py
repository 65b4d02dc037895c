"""The README and docs/ stay true: their links and anchors resolve, each shell example is run by a test or skipped for
a reason a reader can check, every docs/ page the code names exists, the options reference names every key, and the
README stays a short guide."""
import glob
import os
import re

import pytest

from metaf2n_plugin import AdaptationSettings
from metaf2n_plugin.models.metaf2n_model import TRAIN_KEYS, VAL_KEYS
from conftest import REPO, doc_blocks

PAGES = ['README.md', *sorted(os.path.relpath(path, REPO) for path in glob.glob(os.path.join(REPO, 'docs', '*.md')))]
README_LINES = 250
WORDS_OF_A_NOTEBOOK = ('this machine', 'session')  # docs speak of CPUs by name (docs/benchmarks.md), not of history
CODE_BLOCK_TAGS = ('bash', 'python', 'yaml', 'text', 'json')  # a shell example is tagged bash: the tests find it so

# a string that identifies the block -> the test file that runs it with run_doc_block
RUN_BY = {
    'metaf2n-infer datasets/real/': 'test_demo.py',
    'options/train_gpen_srmodel_tiny.yml': 'test_basicsr_runners.py',
    'options/train_metaf2n_tiny.yml': 'test_metaf2n_runners.py',
}
# a string that identifies the block -> why no test runs it
SKIPPED = {
    'make demo ': 'the two commands: CI runs `make test` and `make test-e2e`; test_demo.py runs the demo script',
    'metaf2n-infer photo.jpg': 'needs your photos and the official weights (test_infer.py runs these options)',
    'make app ': 'serves the page until Ctrl-C; test_app.py starts metaf2n-app and drives it in Chromium',
    'name=demo_constant_lr': 'a 6-minute training on 2 cores; docs/training.md quotes the row it printed',
    'weights/RealESRGAN_x4plus.pth, 67 MB': 'fetches a 45 MB wheel; test_ncnn_weights.py converts the same wheel',
    'scripts/heldout_study.py --iters 80': 'about 80 minutes of training on 2 cores; docs/heldout.md is its output',
    'pip install torch torchvision': 'installs packages, as `make install` does before every test run',
    'options/train_metaf2n.yml ': "needs the paper's data, weights and a GPU",
    'extract_face_pairs.py --lq data/LQ': 'needs your photos and GPEN / RetinaFace weights (test_face_script.py)',
    'make_testset.py --input datasets/FFHQ_test': 'needs FFHQ, CelebA-HQ and DIV2K (test_make_testset.py)',
    'pip install ".[convert]"': 'needs TensorFlow and the official checkpoint (test_official_weights.py)',
    'train_my_swinir.yml': 'needs your options file; test_any_network.py meta-trains a SwinIR and runs it with --opt',
    'metaf2n-infer photos/ -o out --side-by-side    # killed': 'needs your photos; test_archive.py kills and re-runs',
    'torchrun --standalone --nproc_per_node 2 -m metaf2n_plugin.infer':
    'needs your photos, GPUs or machines; test_archive.py runs two CPU processes',
    'metaf2n-convert MetaF2N_ckpt/model-400000':
    'needs the official checkpoint, GPEN and FFHQ (test_official_weights.py)',
}
# where the code names docs/ pages: its docstrings, comments and messages
CODE = ('metaf2n_plugin/**/*.py', 'scripts/*.py', 'bench/*.py', 'tests/*.py', 'options/*.yml', 'setup.py', 'setup.cfg',
        'Makefile', '.ci/run', 'metaf2n_autoload.py')


def read(name):
    with open(os.path.join(REPO, name), encoding='utf-8') as f:
        return f.read()


def code_blocks(text):
    """``[(tag, body)]`` of every fenced code block of a Markdown text (tag '' when there is none)."""
    return re.findall(r'^ *```([^\n`]*)\n(.*?)^ *```', text, re.M | re.S)


def without_code_blocks(text):
    return re.sub(r'^ *```.*?^ *```', '', text, flags=re.M | re.S)


def prose(text):
    """The text without its code blocks and code spans, where a link is only an example."""
    return re.sub(r'`[^`\n]*`', '', without_code_blocks(text))


def slug(heading):
    """GitHub's anchor of a heading: its text (links as their words) lowercased, punctuation but '-' and '_' dropped,
    spaces as '-'."""
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading.strip()).lower()
    return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def anchors(name):
    """The anchors of a Markdown file's headings; a repeated one gets -1, -2, ... as on GitHub."""
    seen, result = {}, set()
    for heading in re.findall(r'^#{1,6} +(.+?) *#*$', without_code_blocks(read(name)), re.M):
        base = slug(heading)
        result.add(base if base not in seen else f'{base}-{seen[base]}')
        seen[base] = seen.get(base, 0) + 1
    return result


def links(name):
    """The relative link targets of a Markdown file, ``[text](target)`` and ``![alt](target)``, outside code."""
    targets = re.findall(r'\]\(([^()\s]+)(?: +"[^"]*")?\)', prose(read(name)))
    return [target for target in targets if not re.match(r'[a-z]+:', target)]


@pytest.mark.parametrize('name', PAGES)
def test_every_relative_link_and_anchor_resolves(name):
    folder = os.path.dirname(os.path.join(REPO, name))
    for target in links(name):
        path, _, anchor = target.partition('#')
        where = os.path.normpath(os.path.join(folder, path)) if path else os.path.join(REPO, name)
        assert os.path.exists(where), f'{name}: the link ({target}) points to a missing file'
        if anchor:
            assert where.endswith('.md'), f'{name}: ({target}) has an anchor into a file that is not Markdown'
            page = os.path.relpath(where, REPO)
            assert anchor in anchors(page), f'{name}: ({target}) names no heading of {page}: {sorted(anchors(page))}'


def test_anchors_follow_githubs_rule():
    assert slug('At paper scale: data, weights, training and testing on a GPU') == (
        'at-paper-scale-data-weights-training-and-testing-on-a-gpu')
    assert slug('Test sets: `scripts/make_testset.py`') == 'test-sets-scriptsmake_testsetpy'
    assert slug('BasicSR 1.4.2 compatibility notes') == 'basicsr-142-compatibility-notes'
    assert slug("How BasicSR's runners find the [plugin](x.md)") == 'how-basicsrs-runners-find-the-plugin'


@pytest.mark.parametrize('name', PAGES)
def test_code_blocks_are_tagged_and_shell_examples_tagged_bash(name):
    for tag, body in code_blocks(read(name)):
        assert tag.strip() in CODE_BLOCK_TAGS, (f'{name}: a code block tagged {tag!r}; tag a shell example `bash` (and '
                                                f'classify it in tests/test_docs.py), others one of {CODE_BLOCK_TAGS}:'
                                                f'\n{body}')


def test_every_shell_example_is_run_by_a_test_or_skipped_for_a_stated_reason():
    blocks = doc_blocks()
    assert {name for name, _ in blocks} <= set(PAGES)
    for name, block in blocks:
        matches = [key for key in (*RUN_BY, *SKIPPED) if key in block]
        what = f'classify this block of {name} in tests/test_docs.py (keys matching: {matches})'
        assert len(matches) == 1, f'{what}:\n{block}'
    for key, test_file in RUN_BY.items():
        assert sum(key in block for _, block in blocks) == 1, key
        runner = read(os.path.join('tests', test_file))
        assert f'run_doc_block({key!r}' in runner, f'{test_file} should run the block with {key!r}'
    for key in SKIPPED:
        assert sum(key in block for _, block in blocks) == 1, f'no block, or several, hold {key!r}'


def test_every_docs_page_the_code_names_exists():
    files = {path for pattern in CODE for path in glob.glob(os.path.join(REPO, pattern), recursive=True)}
    missing = []
    for path in sorted(files):
        for page in re.findall(r'docs/[\w.-]+\.md', read(path)):
            if not os.path.isfile(os.path.join(REPO, page)):
                missing.append((os.path.relpath(path, REPO), page))
    assert not missing, f'(file, the page it names, which does not exist): {missing}'


@pytest.mark.parametrize('name', PAGES)
def test_no_page_reads_as_a_lab_notebook(name):
    text = read(name).lower()
    for words in WORDS_OF_A_NOTEBOOK:
        assert words not in text, f'{name} speaks of {words!r}: name the CPU and date (docs/benchmarks.md) instead'


def test_the_readme_is_a_short_guide():
    assert read('README.md').count('\n') <= README_LINES


def test_the_options_reference_names_every_key_the_model_takes():
    with open(os.path.join(REPO, 'docs', 'options.md'), encoding='utf-8') as f:
        reference = f.read()
    keys = (*TRAIN_KEYS, *VAL_KEYS, *AdaptationSettings.names())
    assert [key for key in keys if f'`{key}`' not in reference] == [], 'document these keys in docs/options.md'


def test_every_test_a_reliability_row_names_exists():
    """``docs/reliability.md`` gives the test holding each bad input as ``file.py::test``, or a file: each exists."""
    text = read('docs/reliability.md')
    named = re.findall(r'`(test_\w+\.py)(?:::(test_\w+))?`', text)
    assert len({test for _, test in named if test}) >= 30
    for file, test in named:
        path = os.path.join(REPO, 'tests', file)
        assert os.path.isfile(path), file
        if test:
            assert re.search(rf'^def {test}\(', open(path, encoding='utf-8').read(), re.M), f'{file}::{test}'
