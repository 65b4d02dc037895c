"""The start-up hook: BasicSR's runners see the plugin, Python start-up does not pay for it."""
import os
import sysconfig
import zipfile

import pytest

from conftest import REPO, run_python

REGISTERED = ("from basicsr.utils.registry import ARCH_REGISTRY as A; import sys; "
              "print('MaskNet' in A, 'GPEN' in A, sorted(m for m in sys.modules if m.startswith('metaf2n'))[:2])")


def imported_at_startup(cwd, env=None):
    """Top-level module names that ``python -X importtime -c pass`` imports."""
    proc = run_python('-X', 'importtime', '-c', 'pass', cwd=cwd, env=env)
    return {line.split('|')[-1].strip().split('.')[0] for line in proc.stderr.splitlines() if '|' in line}


def test_startup_imports_neither_torch_nor_the_plugin(tmp_path):
    modules = imported_at_startup(tmp_path)
    assert 'metaf2n_autoload' in modules, 'the .pth hook is not installed in site-packages'
    assert not modules & {'torch', 'torchvision', 'basicsr', 'metaf2n_plugin', 'numpy'}


def test_switch_disables_the_hook(tmp_path):
    assert 'metaf2n_autoload' not in imported_at_startup(tmp_path, env={'METAF2N_NO_AUTOLOAD': '1'})


@pytest.mark.parametrize(
    'first',
    [
        'import metaf2n_plugin',  # 'import basicsr', the runners' order: the next test
        pytest.param('import metaf2n_plugin, basicsr', marks=pytest.mark.e2e),
        pytest.param('import basicsr, metaf2n_plugin', marks=pytest.mark.e2e)
    ])
def test_any_import_order_registers_the_plugin_once(tmp_path, first):
    out = run_python('-c', f'{first}; {REGISTERED}', cwd=tmp_path).stdout
    assert out.strip() == "True True ['metaf2n_autoload', 'metaf2n_plugin']"


def test_import_basicsr_registers_the_plugin_once_and_gives_the_real_package(tmp_path):
    code = (
        'import basicsr, basicsr.train, sys; '
        f'print(basicsr.__file__, sys.modules["basicsr"] is basicsr, hasattr(basicsr, "train_pipeline")); {REGISTERED}')
    package, registered = run_python('-c', code, cwd=tmp_path).stdout.strip().split('\n')
    path, same, has_pipeline = package.split()
    assert path.endswith(os.path.join('basicsr', '__init__.py')) and same == has_pipeline == 'True'
    assert registered == "True True ['metaf2n_autoload', 'metaf2n_plugin']"


@pytest.mark.e2e
def test_non_editable_wheel_carries_the_hook_and_runners_see_the_plugin(tmp_path):
    """``pip install .`` (a wheel) puts the .pth at site-packages level; a process started there loads it."""
    run_python(
        '-m',
        'pip',
        'wheel',
        '--quiet',
        '--no-deps',
        '--no-build-isolation',
        '-w',
        str(tmp_path / 'dist'),
        REPO,
        cwd=tmp_path)
    (wheel, ) = (tmp_path / 'dist').glob('metaf2n_plugin-*.whl')
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert {'metaf2n_autoload.pth', 'metaf2n_autoload.py', 'metaf2n_plugin/compat.py'} <= set(names)
        # Install by unpacking into a site directory of a throwaway venv that sees our dependencies
        # through a plain path entry (which, unlike site-packages, does not run the editable hook).
        run_python('-m', 'venv', '--without-pip', str(tmp_path / 'venv'), cwd=tmp_path)
        site = sysconfig.get_path('purelib', vars={'base': str(tmp_path / 'venv'), 'platbase': str(tmp_path / 'venv')})
        zf.extractall(site)
    deps = sysconfig.get_path('purelib')
    with open(os.path.join(site, 'zz_dependencies.pth'), 'w') as f:
        f.write(deps + '\n')
    code = f'import basicsr, metaf2n_plugin; print(metaf2n_plugin.__file__); {REGISTERED}'
    proc = run_python('-c', code, cwd=tmp_path, python=tmp_path / 'venv' / 'bin' / 'python')
    plugin_file, registered = proc.stdout.strip().split('\n')
    assert plugin_file.startswith(site)
    assert registered == "True True ['metaf2n_autoload', 'metaf2n_plugin']"
