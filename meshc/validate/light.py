"""The spec's models declared without pydantic, for a `meshc validate` or `meshc build` whose
compiled validator is in the cache (meshc.validate.compiled).

pydantic is what generates a model's validator. A validator compiled from a cached core schema
needs only the classes that schema names: pydantic-core makes each instance itself (`cls.__new__`,
then sets its `__dict__`, `__pydantic_fields_set__`, `__pydantic_extra__` and
`__pydantic_private__`). Importing pydantic and declaring the 68 models with it (its metaclass
collects every class's fields) took more than half of a short `meshc validate`; declared with the
stand-ins below, the same source (meshc/validate/models.py, the one description of the spec)
gives plain classes of the same names, fields and defaults, and what meshc reads of a model
behaves as pydantic's: attributes, `model_fields` (alias and annotation of each field),
`model_construct`, `model_validate`, equality, hashing, pickling.

The field aliases are pydantic's own, written into the cache file beside the schema by a run that
declared the models with pydantic. Only a process that ends with its command asks for light
models (meshc.cli.run): tests, `meshc schema` and a library user import them with pydantic.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

_CORE = "pydantic_core._pydantic_core"


def _compiled_core() -> ModuleType:
    """pydantic-core's compiled module, which validation needs, without its package's __init__
    (the typed description of every core schema: typing_extensions, decimal, datetime...; about
    0.03 s) unless something imported the package already. The package, when pydantic imports it
    later, re-exports this same module."""
    if _CORE in sys.modules or "pydantic_core" in sys.modules:
        return importlib.import_module(_CORE)
    package = importlib.util.find_spec("pydantic_core")       # found, not imported
    locations = package.submodule_search_locations if package is not None else None
    finder = importlib.machinery.FileFinder(
        locations[0], (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES)) \
        if locations else None
    spec = finder.find_spec(_CORE) if finder is not None else None
    if spec is None or spec.loader is None:
        return importlib.import_module(_CORE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_CORE] = module
    try:
        spec.loader.exec_module(module)
    except Exception:   # noqa: BLE001 - however it failed, the package's own import is the reference
        del sys.modules[_CORE]
        return importlib.import_module(_CORE)
    return module


if TYPE_CHECKING:
    from pydantic_core import PydanticCustomError, SchemaValidator, ValidationError
else:
    _core = _compiled_core()
    PydanticCustomError, SchemaValidator, ValidationError = (
        _core.PydanticCustomError, _core.SchemaValidator, _core.ValidationError)


def core_version() -> str:
    version: str = sys.modules[_CORE].__version__
    return version


__all__ = [
    "AfterValidator", "BaseModel", "BeforeValidator", "ConfigDict", "CoreSchema", "Discriminator", "Field",
    "FieldInfo", "GetCoreSchemaHandler", "GetJsonSchemaHandler", "PydanticCustomError", "SchemaValidator",
    "StrictBool", "StrictInt", "Tag", "ValidationError", "WithJsonSchema", "activate", "active", "aliases",
    "core_schema", "core_version", "deactivate", "to_camel",
]

# field aliases by model ("module.qualname" -> {field name: alias}); None: models are pydantic's
_aliases: dict[str, dict[str, str]] | None = None


def active() -> bool:
    """Whether the models, when imported, are declared light."""
    return _aliases is not None


def aliases() -> dict[str, dict[str, str]]:
    return _aliases or {}


def activate(aliases: dict[str, dict[str, str]]) -> None:
    global _aliases
    _aliases = aliases


def deactivate() -> None:
    global _aliases
    _aliases = None


class Marker:
    """What pydantic reads to generate a schema (validators, tags, JSON Schema overrides, the alias
    generator): kept, inert, by a light model; the compiled schema already holds its effect."""

    __slots__ = ("name", "args", "kwargs")

    def __init__(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.name, self.args, self.kwargs = name, args, kwargs

    def __repr__(self) -> str:
        return f"{self.name}(...)"


def _marker(name: str) -> Callable[..., Marker]:
    def make(*args: Any, **kwargs: Any) -> Marker:
        return Marker(name, args, kwargs)

    make.__name__ = make.__qualname__ = name
    return make


AfterValidator = _marker("AfterValidator")
BeforeValidator = _marker("BeforeValidator")
Discriminator = _marker("Discriminator")
Tag = _marker("Tag")
WithJsonSchema = _marker("WithJsonSchema")
to_camel = Marker("to_camel", (), {})
core_schema = Marker("core_schema", (), {})
StrictInt = Annotated[int, Marker("Strict", (), {})]
StrictBool = Annotated[bool, Marker("Strict", (), {})]
# names only read in annotations of pydantic's hooks, which nothing calls on a light model
CoreSchema = GetCoreSchemaHandler = GetJsonSchemaHandler = Marker("hook type", (), {})
ConfigDict = dict

_REQUIRED = Marker("required", (), {})


class Field:
    """`Field(...)`: as a class attribute, a default (or default factory) and an alias; in
    `Annotated`, constraints that the compiled schema holds."""

    __slots__ = ("default", "default_factory", "alias")

    def __init__(self, default: Any = _REQUIRED, *, default_factory: Callable[[], Any] | None = None,
                 alias: str | None = None, **constraints: Any) -> None:
        self.default, self.default_factory, self.alias = default, default_factory, alias


class FieldInfo:
    """A field as `model_fields` describes it: its name in the spec, and its declared type."""

    __slots__ = ("alias", "annotation")

    def __init__(self, alias: str, annotation: Any) -> None:
        self.alias, self.annotation = alias, annotation


class _ModelFields:
    """`Model.model_fields`, made on first use from the class's annotations and pydantic's aliases."""

    def __get__(self, instance: object, owner: type) -> dict[str, FieldInfo]:
        fields: dict[str, FieldInfo] | None = owner.__dict__.get("_light_fields")
        if fields is None:
            if _aliases is None:
                raise TypeError(f"{owner.__qualname__} is a light model, but no aliases were given")
            annotations = owner.__dict__.get("__annotations__", {})
            aliases = _aliases[f"{owner.__module__}.{owner.__qualname__}"]
            fields = {name: FieldInfo(alias, annotations[name]) for name, alias in aliases.items()}
            type.__setattr__(owner, "_light_fields", fields)
        return fields


_set = object.__setattr__


class BaseModel:
    """The base of light models: an instance is what pydantic-core's validator makes of a mapping."""

    __slots__ = ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
    __pydantic_fields_set__: set[str]
    __pydantic_extra__: dict[str, Any] | None
    __pydantic_private__: dict[str, Any] | None
    __pydantic_complete__: ClassVar[bool] = False      # its validator comes compiled, from the cache
    __pydantic_validator__: ClassVar[Any] = None
    model_config: ClassVar[dict[str, Any]] = {}
    model_fields: ClassVar[_ModelFields] = _ModelFields()

    def __init__(self, **data: Any) -> None:
        raise TypeError(f"{type(self).__name__}: a light model is made by model_validate() or model_construct()")

    @classmethod
    def model_validate(cls, obj: Any) -> Any:
        return cls.__pydantic_validator__.validate_python(obj)

    @classmethod
    def model_construct(cls, **values: Any) -> Any:
        """An instance of these values and the other fields' defaults, unchecked (pydantic's
        model_construct: a value by alias or by name; a required field not given stays unset)."""
        instance = cls.__new__(cls)
        data: dict[str, Any] = {}
        given = set()
        for name, info in cls.model_fields.items():
            if info.alias in values or name in values:
                data[name] = values[info.alias] if info.alias in values else values[name]
                given.add(name)
                continue
            default = _default(cls.__dict__.get(name, _REQUIRED))
            if default is not _REQUIRED:
                data[name] = default
        _set(instance, "__dict__", data)
        _set(instance, "__pydantic_fields_set__", given)
        _set(instance, "__pydantic_extra__", None)
        _set(instance, "__pydantic_private__", None)
        return instance

    @property
    def model_fields_set(self) -> set[str]:
        return self.__pydantic_fields_set__

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"{type(self).__name__} is frozen")

    def __delattr__(self, name: str) -> None:
        raise TypeError(f"{type(self).__name__} is frozen")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseModel):
            return NotImplemented
        return (type(self) is type(other) and self.__dict__ == other.__dict__
                and self.__pydantic_extra__ == other.__pydantic_extra__
                and self.__pydantic_private__ == other.__pydantic_private__)

    def __hash__(self) -> int:
        return hash((type(self), *self.__dict__.values()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"

    # pydantic's pickled form, so that either kind of model reads what the other wrote
    def __getstate__(self) -> dict[str, Any]:
        return {"__dict__": self.__dict__, "__pydantic_extra__": self.__pydantic_extra__,
                "__pydantic_fields_set__": self.__pydantic_fields_set__,
                "__pydantic_private__": self.__pydantic_private__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        _set(self, "__dict__", state["__dict__"])
        _set(self, "__pydantic_fields_set__", state.get("__pydantic_fields_set__", set()))
        _set(self, "__pydantic_extra__", state.get("__pydantic_extra__"))
        _set(self, "__pydantic_private__", state.get("__pydantic_private__"))


def _default(declared: Any) -> Any:
    """A field's default as pydantic's model_construct gives it: a factory's result, and an empty
    list or mapping of its own."""
    if isinstance(declared, Field):
        return declared.default_factory() if declared.default_factory is not None else declared.default
    if isinstance(declared, (list, dict, set)):
        return declared.copy()
    return declared
