"""Start-up hook that loads ``metaf2n_plugin`` the moment ``basicsr`` is imported.

BasicSR has no plugin mechanism: its registries only hold what has been imported, and
``python -m basicsr.train`` imports nothing of ours. ``metaf2n_autoload.pth`` (installed next to this
module in site-packages) calls :func:`install` at interpreter start-up. That only puts a tiny finder
on ``sys.meta_path``; it imports neither torch nor the plugin, so start-up stays as fast as before
(``bench/startup.py`` measures it). The first ``import basicsr`` then runs ``import metaf2n_plugin``
instead, which applies the BasicSR fixes, imports the real ``basicsr`` and registers the plugin's
classes, and the finder removes itself.

Set ``METAF2N_NO_AUTOLOAD=1`` to switch the hook off for one process.
This module must stay free of imports beyond ``sys``: it runs in every Python process.
"""
import sys

PLUGIN = 'metaf2n_plugin'


class BasicsrImportHook:
    """Meta-path finder: answers the first ``import basicsr`` with ``import metaf2n_plugin``."""

    def find_spec(self, name, path=None, target=None):
        if name != 'basicsr' or PLUGIN in sys.modules or _find_elsewhere(self, PLUGIN) is None:
            return None
        sys.meta_path.remove(self)  # one shot: the plugin's own `import basicsr` must go to the real one
        return sys.modules['_frozen_importlib'].ModuleSpec(name, self)

    def create_module(self, spec):
        return None  # the default module; it is only a placeholder, see exec_module

    def exec_module(self, module):
        # Drop the placeholder so that the plugin's `import basicsr` loads the real package; the import
        # system then returns whatever `sys.modules['basicsr']` holds, i.e. that real package.
        del sys.modules['basicsr']
        __import__(PLUGIN)


def _find_elsewhere(hook, name):
    """The spec the other finders give for ``name`` (None when it is not installed)."""
    for finder in sys.meta_path:
        if finder is not hook and hasattr(finder, 'find_spec'):
            spec = finder.find_spec(name, None)
            if spec is not None:
                return spec
    return None


def install():
    """Put the hook first on ``sys.meta_path`` (idempotent)."""
    if not any(isinstance(finder, BasicsrImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, BasicsrImportHook())
