"""metaf2n-plugin: MetaF2N blind super-resolution as a BasicSR plugin.

Besides the package, this installs the start-up hook ``metaf2n_autoload.pth`` into site-packages (docs/basicsr.md);
setuptools has no option for a top-level ``.pth`` file, hence the two commands below.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

HERE = Path(__file__).resolve().parent
HOOK = 'metaf2n_autoload.pth'
HOOK_MODULE = 'metaf2n_autoload.py'
GRADIO = 'gradio==6.31.0'  # metaf2n-app's page, pinned: Gradio changes its components between releases
SPANDREL = 'spandrel==0.4.2'  # bare weights files of other architectures, pinned: it adds and changes detections
VERSION = re.search(r"^__version__ = '(.+)'$", (HERE / 'metaf2n_plugin' / '__init__.py').read_text(), re.M)[1]


class BuildPyWithHook(build_py):
    """``pip install .``: put the hook at the wheel's root, which is site-packages."""

    def run(self):
        super().run()
        self.copy_file(str(HERE / HOOK), str(Path(self.build_lib) / HOOK), preserve_mode=False)


class EditableWheelWithHook(editable_wheel):
    """``pip install -e .``: the package stays in the source tree; the hook is copied to site-packages, where pip
    byte-compiles it."""

    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
        for name in (HOOK, HOOK_MODULE):
            self.copy_file(str(HERE / name), str(Path(unpacked_wheel) / name), preserve_mode=False)
        return super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)


setup(
    name='metaf2n-plugin',
    version=VERSION,
    description='MetaF2N (ICCV 2023) blind face-guided super-resolution, with a self-similarity-graph '
    'loss, as a BasicSR plugin',
    long_description=(HERE / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['metaf2n_plugin', 'metaf2n_plugin.*']),
    py_modules=['metaf2n_autoload'],
    package_data={
        'metaf2n_plugin': ['py.typed'],  # PEP 561: the package's type hints are for its users' type checkers too
        'metaf2n_plugin.faces': ['builtin_faces.json']
    },
    install_requires=[
        # basicsr is an sdist whose setup.py imports torch: install torch first and build it with
        # `pip install --no-build-isolation basicsr` (the Makefile does).
        'basicsr>=1.4.2',
        # torch >= 2.6: torch.load defaults to weights_only=True, which BasicSR's load_network and lpips's
        # head loader rely on for files the user hands in (they pass no weights_only themselves)
        'torch>=2.6',
        'torchvision>=0.21',
        'facexlib>=0.3.0',
        'lpips>=0.1.4',
        'pyyaml>=5.4',
        'tb-nightly',  # what BasicSR's tensorboard logger uses; it publishes pre-releases only
        'numpy>=1.21',
        'opencv-python>=4.12',  # imdecodeWithMetadata: photos' EXIF orientation with their alpha and 16 bits
    ],
    # The test photos ship inside scikit-image and matplotlib (both also arrive with basicsr / facexlib).
    # `lint`: `make lint`'s tools (style and types), pinned because they change between releases.
    # `convert`: metaf2n-convert reads the official TensorFlow checkpoint (an .npz of its variables needs nothing).
    # `app`: metaf2n-app's web page; the tests drive it in Chromium (Debian's package) with Playwright.
    # `infer`: metaf2n-infer, the page and PhotoSuperResolver read bare weights files of architectures other than
    # RRDBNet (SRVGGNetCompact, SwinIR, HAT, ...) through spandrel; --opt needs nothing more.
    extras_require={
        'test': ['pytest>=7', 'scikit-image>=0.19', 'matplotlib>=3.3', GRADIO, 'playwright==1.65.2', SPANDREL],
        'lint': ['flake8==7.5.0', 'isort==9.0.2', 'yapf==0.43.0', 'mypy==2.4.1'],
        'convert': ['tensorflow>=2.4'],
        'app': [GRADIO, SPANDREL],
        'infer': [SPANDREL]
    },
    entry_points={
        'console_scripts': [
            'metaf2n-app = metaf2n_plugin.app:main', 'metaf2n-convert = metaf2n_plugin.official_weights:main',
            'metaf2n-infer = metaf2n_plugin.infer:main'
        ]
    },
    cmdclass={
        'build_py': BuildPyWithHook,
        'editable_wheel': EditableWheelWithHook
    },
)
