"""MetaF2N for BasicSR: blind super-resolution adapted to each photo by the faces in it.

Importing this package makes BasicSR usable on today's torch/torchvision (``compat``) and registers the
plugin's architectures, datasets, losses, metrics and models in BasicSR's registries, so that
``network_g: {type: MaskNet}`` and friends work in any BasicSR options file. BasicSR's own runners
import it automatically through the ``metaf2n_autoload`` start-up hook.
"""
from metaf2n_plugin import compat

compat.apply()  # must run before the registries below import basicsr

from metaf2n_plugin import archs, data, losses, metrics, models  # noqa: E402,F401  (registers classes)
from metaf2n_plugin.models.adaptation import adapt_to_faces  # noqa: E402,F401

__version__ = '0.1.0'
