"""MetaF2N for BasicSR. Importing it applies the BasicSR fixes (``compat``) and registers the plugin's classes
in BasicSR's registries; BasicSR's runners import it on their own (docs/basicsr.md).
"""
from metaf2n_plugin import compat

compat.apply()  # must run before the registries below import basicsr

from metaf2n_plugin import archs, data, losses, metrics, models  # noqa: E402,F401  (registers classes)
from metaf2n_plugin.models.adaptation import adapt_to_faces  # noqa: E402,F401

__version__ = '0.1.0'
