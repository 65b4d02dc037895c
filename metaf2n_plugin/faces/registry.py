"""Face sources and face restorers by name: one registry each, which everything that offers, checks or builds them
reads (``FacePairExtractor``'s options, ``metaf2n-infer --detector``, the page's detector menu, a dataset's
``face_source``, and their error texts). A new detector or restorer is one module with one registration
(docs/design.md)::

    @FACE_SOURCES.register('toy', detector=True)
    class ToyDetector:
        def __init__(self, device='cpu'): ...
        def __call__(self, image, image_path=None): ...  # (H, W, 3) RGB float in [0, 1] -> list[Face]

A detector finds faces in any photo; the other face sources (``landmarks``, ``pairs``) look them up. A constructor
argument named ``device`` receives the run's device; the others are the options' keys besides ``type``.
"""
import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar, Union

from metaf2n_plugin.errors import OptionError, UnknownComponentError

AUTO = 'auto'  # the detector choice that picks RetinaFace when its weights are found, else MTCNN
ClassT = TypeVar('ClassT', bound=type)


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registered class. ``detector``: it finds faces in any photo (offered by ``--detector`` and the page);
    ``weights_suffixes``: the endings of the weights files it reads (a path with another detector's ending is not
    handed to it)."""
    name: str
    cls: type
    detector: bool = False
    weights_suffixes: tuple[str, ...] = ()


class ComponentRegistry(Mapping[str, type]):
    """Classes by name for one ``kind`` (``'face source'``, ``'restorer'``), in registration order; read-only as a
    mapping (``registry['mtcnn']`` is the class, as in 0.1's dicts), changed by :meth:`register`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self,
                 name: str,
                 *,
                 detector: bool = False,
                 weights_suffixes: tuple[str, ...] = ()) -> Callable[[ClassT], ClassT]:
        """A class decorator registering the class under ``name``; ValueError when ``name`` is taken."""

        def add(cls: ClassT) -> ClassT:
            if name == AUTO:
                raise ValueError(f'{AUTO!r} is reserved: it picks a detector')
            if name in self._entries:
                raise ValueError(f'{self.kind} {name!r} is registered already ({self[name].__name__})')
            self._entries[name] = Entry(name, cls, detector, weights_suffixes)
            return cls

        return add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a test's own component, or one to replace)."""
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> type:
        return self._entries[name].cls

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def detectors(self) -> list[str]:
        """The names of the face sources that find faces themselves, in registration order."""
        return [entry.name for entry in self._entries.values() if entry.detector]

    def entry(self, name: Any) -> Entry:
        """The entry of ``name``; :class:`UnknownComponentError` listing the registered names otherwise."""
        if name not in self._entries:
            raise UnknownComponentError(
                f'unknown {self.kind} type {name!r}; choose one of {list(self)}',
                option='type',
                value=name,
                kind=self.kind,
                name=name,
                choices=list(self))
        return self._entries[name]

    def builder(self, options: Union[str, Mapping[str, Any], None], device: Any = 'cpu') -> functools.partial:
        """The constructor call of ``{type: <name>, <arguments>}`` (or just ``<name>``), checked now (the type, the
        argument names) and made when called; an argument named ``device`` gets ``device`` unless given."""
        options = {'type': options} if isinstance(options, str) or options is None else dict(options)
        entry = self.entry(options.pop('type', None))
        parameters = inspect.signature(entry.cls).parameters
        known = set(parameters) - {'device'}
        unknown = sorted(set(options) - known - {'device'})
        if unknown:
            raise OptionError(
                f'unknown {self.kind} options {unknown} for type {entry.name}; known: {sorted(known)}',
                option=unknown[0],
                value=None)
        if 'device' in parameters:
            options.setdefault('device', device)
        return functools.partial(entry.cls, **options)


FACE_SOURCES = ComponentRegistry('face source')
RESTORERS = ComponentRegistry('restorer')


def detector_choices() -> list[str]:
    """What a front end offers: ``'auto'`` then every registered detector."""
    return [AUTO, *FACE_SOURCES.detectors()]
