"""Start-up hook: the first ``import basicsr`` of a process imports ``metaf2n_plugin`` instead (docs/basicsr.md).

``metaf2n_autoload.pth`` calls :func:`install` at interpreter start-up, which only puts a finder on
``sys.meta_path``; ``METAF2N_NO_AUTOLOAD=1`` switches the hook off for a process. This module runs in every
Python process: it must import nothing but ``sys``.
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
