"""The errors the library raises on purpose. Each carries its data as attributes (the file, the option, the size)
and a message in the library's words; a front end (``metaf2n-infer``, the page) words it its own way with
:meth:`MetaF2NError.describe`, which names the arguments as that front end calls them (``model`` -> ``--model``).

Each type also derives from the built-in error it refines (ValueError, FileNotFoundError), so that code catching
those keeps working.
"""
import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, Optional

NO_NAMES: Mapping[str, str] = {}
ARGUMENT_NAMES = {'adaptation': 'the adaptation argument'}  # the library's words for an argument, where not its name


class MetaF2NError(Exception):
    """Base class. ``argument``: the library's name of the argument at fault (``'model'``, ``'mask'``,
    ``'adaptation'``) or None; ``template``: the message, with ``{argument}`` where that name goes; ``names``: what
    ``str()`` calls the arguments (the library's names unless :func:`worded_with` set others)."""
    names: Mapping[str, str] = NO_NAMES

    def __init__(self, template: str, *, argument: Optional[str] = None, **data: Any) -> None:
        self.template, self.argument, self.data = template, argument, data
        for key, value in data.items():
            setattr(self, key, value)
        super().__init__(self.describe())

    def describe(self, names: Mapping[str, str] = NO_NAMES) -> str:
        """The message, with the argument called ``names[argument]`` (e.g. a command's flag) when given."""
        if self.argument is None:
            return self.template
        return self.template.replace('{argument}',
                                     names.get(self.argument, ARGUMENT_NAMES.get(self.argument, self.argument)))

    def __str__(self) -> str:
        return self.describe(self.names)


class OptionError(MetaF2NError, ValueError):
    """An option or setting that is unknown or of the wrong kind. ``option``: its name (e.g. ``'adaptation.lr'``);
    ``value``: what was given (None when the key itself is unknown)."""


class UnknownComponentError(OptionError):
    """A face source or restorer ``type`` that no registry entry has. ``kind``: ``'face source'`` or
    ``'restorer'``; ``name``: the type asked for; ``choices``: the registered names."""


class WeightsNotFoundError(MetaF2NError, FileNotFoundError):
    """Weights files that do not exist. ``missing``: argument -> path, listed where the template says
    ``{listing}``; ``advice`` (optional): where to get them, naming the arguments as ``{model}`` and ``{mask}``."""

    def describe(self, names: Mapping[str, str] = NO_NAMES) -> str:
        listing = ', '.join(f'{names.get(key, key)} {path!r}' for key, path in self.data['missing'].items())
        advice = self.data.get('advice', '')
        for key in ('model', 'mask'):
            advice = advice.replace('{' + key + '}', names.get(key, key))
        return super().describe(names).replace('{listing}', listing) + advice


class WeightsFileError(MetaF2NError, ValueError):
    """A weights file that cannot be loaded safely or holds other weights. ``path``: the file; ``reason``: why."""


class PhotoError(MetaF2NError, ValueError):
    """A photo that cannot be processed; the message says why."""


class PhotoSizeError(PhotoError):
    """A photo too small for one face patch or too large for the memory. ``width``, ``height``: its pixels;
    ``needed``, ``available``: bytes (None for a photo too small); ``largest_side``: of the largest square photo that
    would fit (None for a photo too small)."""


def message_of(error: BaseException, names: Mapping[str, str]) -> str:
    """What a front end says of ``error``: a :class:`MetaF2NError` with the arguments called by ``names``, any other
    error as it is."""
    return error.describe(names) if isinstance(error, MetaF2NError) else str(error)


@contextlib.contextmanager
def worded_with(names: Mapping[str, str]) -> Iterator[None]:
    """Inside, a :class:`MetaF2NError` raised calls the arguments by ``names`` in its ``str()``."""
    try:
        yield
    except MetaF2NError as error:
        error.names = names
        raise


@contextlib.contextmanager
def blamed_on(argument: str) -> Iterator[None]:
    """Inside, a :class:`MetaF2NError` raised without an argument, whose message holds ``{argument}``, is given
    ``argument``: a loader words its errors for a file without knowing which argument the file came from."""
    try:
        yield
    except MetaF2NError as error:
        if error.argument is None and '{argument}' in error.template:
            error.argument = argument
        raise
