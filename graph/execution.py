"""A graphql-core executor that completes plain fields without the per-field machinery.

graphql-core completes every field of every object the same way: ``execute_field``
builds a resolve info (Strawberry's subclass), looks up the arguments, calls the
resolver (for a Strawberry field without a resolver: ``getattr``), checks for an
awaitable, then ``complete_value`` walks the type (non-null, list, leaf, abstract,
object) and coerces the value. An Onboarding page of 50 rows has about 950 such values,
and that walk is most of the page's CPU (docs/onboarding-speed.md, "Python per page").

``FastExecutor`` does the same work directly for the fields where it can be proved to
give the same answer: a field of an object type whose resolver is Strawberry's default
(no resolver, no field extension or permission, no arguments, no exception handler) and
whose type is a leaf, an object, or a list of leaves or objects, with no schema
extension implementing ``resolve`` (graphql-core middleware). For those it reads the
attribute as Strawberry's default resolver does, coerces leaves with the type's own
``coerce_output_value`` and completes objects and lists in place. Anything else takes
graphql-core's own code for that one field or list item, from the value already read:
a field with a resolver, an abstract type, a null in a non-null position, a value that
is an exception or an awaitable, an ``is_type_of`` that does not answer True, a leaf
whose coercion returns null. Errors are located and propagated by graphql-core's
``handle_field_error``, so data, errors, paths and null propagation are the generic
path's, byte for byte (tests/graph/test_fast_execution.py compares both on every shape).

Which fields are selected is still decided by graphql-core's ``collect_subfields`` for
this request's variables (``@include``/``@skip``), memoized per request as before; a
plan only records, per selected field, how to complete it. Each plan's loop over its
fields is compiled once per schema and field set (``_compile``): straight-line code that
reads each attribute and keeps the common outcomes inline, handing every other one to
``_one``, the loop's body for one field. The loop's own bookkeeping (unpacking a step,
branching on its kind) was a tenth of the page's execution (docs/onboarding-speed.md).

Written against graphql-core 3.3's ``Executor`` and Strawberry's
``StrawberryGraphQLCoreExecutionContext``; ``_generic_field`` and ``_complete_list`` are
the tails of ``Executor.execute_field`` and ``Executor.complete_iterable_value`` /
``complete_list_item_value`` with the value given instead of resolved.
"""

from __future__ import annotations

import datetime as dt
import keyword
import re
from collections.abc import Awaitable, Callable
from enum import EnumMeta
from functools import partial
from typing import Any, NamedTuple
from weakref import WeakKeyDictionary

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLSchema,
    OperationDefinitionNode,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution.collect_fields import FieldDetailsList, FragmentDetails, GroupedFieldSet
from graphql.execution.executor import to_nodes
from graphql.pyutils import Path, Undefined, gather_with_cancel, is_awaitable, is_iterable
from graphql.type.scalars import serialize_boolean, serialize_id, serialize_string
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.cast import TYPE_CAST_ATTRIBUTE
from strawberry.types.field import StrawberryField

# Values of these exact types are neither exceptions nor awaitables, so graphql-core's
# checks for both can be skipped (subclasses are not in it: they could define __await__).
_PLAIN = frozenset({str, int, float, bool, dt.datetime, dt.date, dt.time})
# Coerced values of these exact types are final: not null, not awaitable.
_PLAIN_OUT = frozenset({str, int, float, bool})

_GENERIC, _TYPENAME, _LEAF, _OBJECT, _LIST = range(5)

# graphql-core's coercions that return a value of this exact type as it is (they begin
# with ``if isinstance(output_value, str): return output_value``, resp. bool).
_IDENTITY: dict[Callable[[Any], Any], type] = {
    serialize_string: str,
    serialize_id: str,
    serialize_boolean: bool,
}


class _Spec(NamedTuple):
    """How to complete one field of one object type."""

    kind: int
    field_def: GraphQLField | None = None
    return_type: GraphQLOutputType | None = None
    nullable: bool = True
    read: Callable[[Any, str], Any] | None = None
    attr: str = ""
    # Leaf: the type's coercion, and for a Strawberry enum the name of each member
    # (id(member) -> name), as that coercion answers. Object: the object type and its
    # is_type_of.
    coerce: Callable[[Any], Any] | None = None
    # The one value type the coercion returns unchanged (graphql-core's String and ID
    # for str, Boolean for bool), else None.
    ident: type | None = None
    members: dict[int, Any] | None = None
    object_type: GraphQLObjectType | None = None
    is_type_of: Callable[[Any, Any], Any] | None = None
    is_type_of_uses_info: bool = False
    # Object: the class whose exact instances complete as this type (_plain_origin).
    origin: type | None = None
    # List: the item type as declared (for errors), whether it is nullable, and the
    # item's kind (_LEAF or _OBJECT) with its coercion / object type above.
    item_type: GraphQLOutputType | None = None
    item_nullable: bool = True
    item_kind: int = _GENERIC


_GENERIC_SPEC = _Spec(_GENERIC)
_TYPENAME_SPEC = _Spec(_TYPENAME)

# Per schema: (object type, field name) -> spec. Schemas are built once per app.
_SPECS: WeakKeyDictionary[GraphQLSchema, dict[tuple[GraphQLObjectType, str], _Spec]] = (
    WeakKeyDictionary()
)


def _strawberry_is_type_of(fn: Callable[..., Any]) -> bool:
    # Strawberry's own is_type_of (types implementing an interface) reads the object
    # only; it takes the info as ``_info`` and ignores it. A type's own is_type_of may
    # read the info, so it gets the real one.
    return fn.__module__ == "strawberry.schema.schema_converter" and fn.__name__ == "is_type_of"


def _enum_members(leaf: Any) -> dict[int, Any] | None:
    """id(member) -> the name the enum type's own coercion gives each member of the
    Python enum behind a Strawberry enum type (a loop over the values per call). Members
    live as long as their class, so an id found here is that member."""
    wrapped = getattr(leaf, "wrapped_cls", None)
    if not isinstance(leaf, GraphQLEnumType) or not isinstance(wrapped, EnumMeta):
        return None
    table: dict[int, Any] = {}
    member: Any
    for member in wrapped:
        if isinstance(member, Exception) or is_awaitable(member):
            continue
        try:
            name = leaf.coerce_output_value(member)
        except Exception:  # noqa: S112 (left to the generic path, which raises it)
            continue
        if name is not None and name is not Undefined:
            table[id(member)] = name
    return table


def _plain_origin(obj: GraphQLObjectType) -> type | None:
    """The Python class whose exact instances graphql-core completes as ``obj`` with no
    doubt, or None. Such an instance is no null, no exception and no awaitable (the
    class has no ``__await__``, looks attributes up as object does, and keeps them in a
    ``__dict__``, where the plan's code checks that no ``__await__`` was set on the
    instance), and the type's is_type_of is absent or Strawberry's own, which answers
    True for an instance of the type's origin unless ``strawberry.cast`` marked it (the
    code checks that mark too)."""
    definition = (obj.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    origin = getattr(definition, "origin", None)
    itof = obj.is_type_of
    if (
        not isinstance(origin, type)
        or type(origin) is not type
        or (itof is not None and not _strawberry_is_type_of(itof))
        or getattr(definition, "concrete_of", None) is not None
        or issubclass(origin, BaseException)
        or hasattr(origin, "__await__")
        or hasattr(origin, "__getattr__")
        or origin.__getattribute__ is not object.__getattribute__
        or not origin.__dictoffset__
    ):
        return None
    return origin


def _named_kind(
    named: GraphQLOutputType,
) -> tuple[int, dict[str, Any]]:
    if is_leaf_type(named):
        coerce = named.coerce_output_value
        return _LEAF, {
            "coerce": coerce,
            "ident": _IDENTITY.get(coerce),
            "members": _enum_members(named),
        }
    if is_object_type(named):
        obj: GraphQLObjectType = named
        itof = obj.is_type_of
        return _OBJECT, {
            "object_type": obj,
            "is_type_of": itof,
            "is_type_of_uses_info": itof is not None and not _strawberry_is_type_of(itof),
            "origin": _plain_origin(obj),
        }
    return _GENERIC, {}


def compile_spec(schema: GraphQLSchema, parent_type: GraphQLObjectType, name: str) -> _Spec:
    if name == "__typename":
        return _TYPENAME_SPEC
    field_def = schema.get_field(parent_type, name)
    if field_def is None or field_def.args or field_def.subscribe is not None:
        return _GENERIC_SPEC
    # Strawberry gives a field without resolver, extension or exception handler a
    # resolver marked _is_default that returns field.get_result(source, None, [], {}),
    # i.e. field.default_resolver(source, field.python_name) (StrawberryField.get_result).
    if not getattr(field_def.resolve, "_is_default", False):
        return _GENERIC_SPEC
    field = (field_def.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if (
        not isinstance(field, StrawberryField)
        or type(field).get_result is not StrawberryField.get_result
        or not field.is_basic_field
    ):
        return _GENERIC_SPEC
    return_type = field_def.type
    nullable = not is_non_null_type(return_type)
    named = return_type if nullable else return_type.of_type  # type: ignore[union-attr]
    common: dict[str, Any] = {
        "field_def": field_def,
        "return_type": return_type,
        "nullable": nullable,
        "read": field.default_resolver,
        "attr": field.python_name,
    }
    if is_list_type(named):
        # @stream would change list completion; this schema has no such directive.
        if schema.get_directive("stream") is not None:
            return _GENERIC_SPEC
        item_type = named.of_type
        item_nullable = not is_non_null_type(item_type)
        item_named = item_type if item_nullable else item_type.of_type
        kind, extra = _named_kind(item_named)
        if kind == _GENERIC:
            return _GENERIC_SPEC
        return _Spec(
            _LIST,
            item_type=item_type,
            item_nullable=item_nullable,
            item_kind=kind,
            **common,
            **extra,
        )
    kind, extra = _named_kind(named)
    if kind == _GENERIC:
        return _GENERIC_SPEC
    return _Spec(kind, **common, **extra)


# Per selected field: response name, field group, and the spec's hot attributes
# unpacked (kind, read, attr, ident, coerce, members), then the spec.
Step = tuple[str, FieldDetailsList, int, Any, str, Any, Any, Any, _Spec]
Steps = list[Step]


class _Unread:
    """A field whose read raised: ``_one`` reads it again and reports the error."""


_UNREAD: Any = _Unread()
_SKIP: Any = object()  # execute_field answered Undefined: the field is left out

# A plan's code, per schema: (object type, (response name, id(spec)) per step) -> run.
# The spec objects live in _SPECS as long as the schema, so their ids are stable.
_CODE: WeakKeyDictionary[GraphQLSchema, dict[tuple[Any, ...], Callable[..., Any]]] = (
    WeakKeyDictionary()
)


# The steps for one field set of one request bound to the code that runs them
# (``_compile``): called as ``plan(executor, parent_type, source, path, position_context)``.
_Plan = Callable[..., Any]


async def _gather(results: dict[str, Any], awaitable_fields: list[str]) -> dict[str, Any]:
    if len(awaitable_fields) == 1:
        field = awaitable_fields[0]
        results[field] = await results[field]
    else:
        awaited = await gather_with_cancel(*(results[f] for f in awaitable_fields))
        results.update(zip(awaitable_fields, awaited, strict=True))
    return results


_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")


def _compile(parent_type: GraphQLObjectType, steps: Steps) -> Callable[..., Any]:
    """The loop of ``Executor.execute_fields`` over ``steps``, unrolled into Python code:
    one block per field, reading the attribute directly and keeping the common outcome
    (a value of the type the coercion returns as it is, an enum member, a null where
    null is allowed, an object or list handed to ``_object``/``_list``) inline. Any
    other outcome of a field (its read raising included) goes to ``_one``, which runs
    that one field as the generic loop did: the code holds no rule of its own, what it
    does not recognise it hands back. Names reach the code only as validated
    identifiers or string constants; every other value lives in its namespace."""
    env: dict[str, Any] = {
        "_UNREAD": _UNREAD,
        "_SKIP": _SKIP,
        "_PLAIN": _PLAIN,
        "_PLAIN_OUT": _PLAIN_OUT,
        "_gather": _gather,
        "Path": Path,
    }
    out = [
        "def run(steps, self, parent_type, src, path, pc):",
        " results = {}",
        " aw = None",
        " is_awaitable = self.is_awaitable",
        " try:",
    ]

    def slow(i: int, n: str, pad: str) -> list[str]:
        return [
            f"{pad}r = self._one(steps[{i}], parent_type, src, path, pc, v)",
            f"{pad}if r is not _SKIP:",
            f"{pad} results[{n}] = r",
            f"{pad} if type(r) is not dict and r is not None and is_awaitable(r):",
            f"{pad}  aw = [{n}] if aw is None else aw + [{n}]",
        ]

    for i, (name, _fdl, kind, read, attr, ident, coerce, members, spec) in enumerate(steps):
        # A response name is a GraphQL name (the parser's rule): its repr is a plain
        # string constant. Anything else is kept in the namespace.
        env[f"N{i}"] = name
        n = repr(name) if _NAME.fullmatch(name) else f"N{i}"
        if kind == _TYPENAME:
            out.append(f"  results[{n}] = {parent_type.name!r}")
            continue
        if kind == _GENERIC:
            out.append("  v = _UNREAD")
            out.extend(slow(i, n, "  "))
            continue
        if read is getattr and _NAME.fullmatch(attr) and not keyword.iskeyword(attr):
            expr = f"src.{attr}"
        else:
            env[f"R{i}"], env[f"A{i}"] = read, attr
            expr = f"R{i}(src, A{i})"
        out += ["  try:", f"   v = {expr}", "  except Exception:", "   v = _UNREAD"]
        if kind != _LEAF:
            env[f"S{i}"] = spec
            method = "_object" if kind == _OBJECT else "_list"
            out += ["  if v is _UNREAD:", *slow(i, n, "   ")]
            if kind == _OBJECT and spec.origin is not None:
                # An exact instance of the type's class: _object's checks cannot fail,
                # so its sub-selection runs here, guarded as _guarded does.
                env[f"O{i}"], env[f"T{i}"] = spec.origin, spec.object_type
                out += [
                    f"  elif (type(v) is O{i} and '__await__' not in (d := v.__dict__)"
                    f" and {TYPE_CAST_ATTRIBUTE!r} not in d and pc is None"
                    f" and (sp := self._subplan(T{i}, steps[{i}][1])) is not None):",
                    f"   fp = Path(path, {n}, {parent_type.name!r})",
                    "   try:",
                    f"    r = sp(self, T{i}, v, fp, None)",
                    "   except Exception as e:",
                    f"    r = self._field_error(S{i}, steps[{i}][1], fp, e)",
                    "   else:",
                    "    if type(r) is not dict and is_awaitable(r):",
                    f"     r = self._await_completed(r, S{i}.return_type, steps[{i}][1], fp)",
                    f"   results[{n}] = r",
                    "   if type(r) is not dict and r is not None:",
                    f"    aw = [{n}] if aw is None else aw + [{n}]",
                ]
            if kind == _OBJECT and spec.nullable:
                out += ["  elif v is None:", f"   results[{n}] = None"]
            out += [
                "  else:",
                f"   r = results[{n}] = self.{method}(S{i}, v, parent_type, steps[{i}][1],"
                f" path, {n}, pc)",
                "   if type(r) is not dict and r is not None and is_awaitable(r):",
                f"    aw = [{n}] if aw is None else aw + [{n}]",
            ]
            continue
        env[f"C{i}"] = coerce
        out.append("  t = type(v)")
        if ident is not None:
            env[f"I{i}"] = ident
            out += [f"  if t is I{i}:", f"   results[{n}] = v", "  elif t in _PLAIN:"]
        else:
            out.append("  if t in _PLAIN:")
        out += [
            "   try:",
            f"    c = C{i}(v)",
            "   except Exception:",
            "    c = _UNREAD",
            "   if type(c) in _PLAIN_OUT:",
            f"    results[{n}] = c",
            "   else:",
            *slow(i, n, "    "),
        ]
        if spec.nullable:
            out += ["  elif v is None:", f"   results[{n}] = None"]
        if members is not None:
            env[f"M{i}"] = members
            out += [f"  elif (c := M{i}.get(id(v))) is not None:", f"   results[{n}] = c"]
        out += ["  else:", *slow(i, n, "   ")]
    out += [
        " except Exception:",
        "  if aw:",
        "   self.settle_in_background([results[f] for f in aw])",
        "  raise",
        " if aw is None:",
        "  return results",
        " return _gather(results, aw)",
    ]
    source = "\n".join(out)
    exec(compile(source, "<graph.execution plan>", "exec"), env)  # noqa: S102
    run: Callable[..., Any] = env["run"]
    return run


# Per schema: for recent operations whose field collection depends on no variable,
# the sub-selection plans every request of that operation shares (id(operation) ->
# (operation, plans by (object type, ids of the field nodes)), or (operation, None) when
# the collection may vary). Entries keep the operation and the keys' nodes alive, so
# the ids stay theirs; the oldest operation is dropped beyond _SHARED_OPERATIONS.
_SHARED: WeakKeyDictionary[
    GraphQLSchema, dict[int, tuple[OperationDefinitionNode, dict[tuple[Any, ...], Any] | None]]
] = WeakKeyDictionary()
_SHARED_OPERATIONS = 256


def _collection_is_fixed(
    operation: OperationDefinitionNode, fragments: dict[str, FragmentDetails]
) -> bool:
    """Whether collecting the operation's fields gives the same field sets for any
    variables: no @skip/@include anywhere in it or its document's fragments, no fragment
    with variables of its own (@defer is not in a schema the fast path serves)."""
    if any(fragment.variable_signatures for fragment in fragments.values()):
        return False
    stack: list[Any] = [operation.selection_set]
    stack.extend(fragment.definition.selection_set for fragment in fragments.values())
    while stack:
        selection_set = stack.pop()
        if selection_set is None:
            continue
        for selection in selection_set.selections:
            for directive in selection.directives or ():
                if directive.name.value in ("skip", "include"):
                    return False
            stack.append(getattr(selection, "selection_set", None))
    return True


class FastExecutor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context with plain fields completed directly."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        # A middleware (a schema extension with a ``resolve`` hook) wraps every
        # resolver, the default one included: then every field takes the generic path.
        # With @defer in the schema, sub-selections may be split into delivery groups.
        self._fast = (manager is None or not manager.middlewares) and self.schema.get_directive(
            "defer"
        ) is None
        specs = _SPECS.get(self.schema)
        if specs is None:
            specs = _SPECS[self.schema] = {}
        self._specs = specs
        code = _CODE.get(self.schema)
        if code is None:
            code = _CODE[self.schema] = {}
        self._code = code
        # Per request, like collect_subfields' own memo (and keyed like it): the steps
        # for a field set, and for the sub-selection of a field group on an object type.
        # Each entry keeps its key object alive so that its id is not reused meanwhile.
        self._plans: dict[tuple[GraphQLObjectType, int], tuple[Any, _Plan | None]] = {}
        self._subplans: dict[tuple[GraphQLObjectType, int], tuple[Any, _Plan | None]] = {}
        self._shared = self._shared_subplans() if self._fast else None

    def _shared_subplans(self) -> dict[tuple[Any, ...], Any] | None:
        """The sub-selection plans this request shares with earlier requests of the
        same operation (parsed documents are cached), or None when its collection may
        depend on the variables. graphql-core collects per request; the result is the
        same field sets for the same nodes, so building the steps once is enough."""
        operations = _SHARED.get(self.schema)
        if operations is None:
            operations = _SHARED[self.schema] = {}
        operation = self.operation
        entry = operations.get(id(operation))
        if entry is None or entry[0] is not operation:
            if len(operations) >= _SHARED_OPERATIONS:
                del operations[next(iter(operations))]
            fixed = _collection_is_fixed(operation, self.fragments)
            entry = operations[id(operation)] = (operation, {} if fixed else None)
        return entry[1]

    def _plan(
        self, parent_type: GraphQLObjectType, grouped_field_set: GroupedFieldSet
    ) -> _Plan | None:
        key = (parent_type, id(grouped_field_set))
        entry = self._plans.get(key)
        if entry is not None:
            return entry[1]
        specs = self._specs
        steps: Steps = []
        any_fast = False
        for response_name, field_details_list in grouped_field_set.items():
            name = field_details_list[0].node.name.value
            spec = specs.get((parent_type, name))
            if spec is None:
                spec = specs[(parent_type, name)] = compile_spec(self.schema, parent_type, name)
            any_fast = any_fast or spec.kind != _GENERIC
            steps.append(
                (
                    response_name,
                    field_details_list,
                    spec.kind,
                    spec.read,
                    spec.attr,
                    spec.ident,
                    spec.coerce,
                    spec.members,
                    spec,
                )
            )
        plan = None
        if any_fast:
            shape = (parent_type, *((step[0], id(step[8])) for step in steps))
            run = self._code.get(shape)
            if run is None:
                run = self._code[shape] = _compile(parent_type, steps)
            plan = partial(run, steps)
        self._plans[key] = (grouped_field_set, plan)
        return plan

    def _subplan(
        self, object_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> _Plan | None:
        """The steps for an object's sub-selection: what collect_and_execute_subfields
        would execute (collected once per operation when no variable can change it, else
        for this request's variables), or None when it must run as it is (a @defer
        usage; every field generic)."""
        key = (object_type, id(field_details_list))
        entry = self._subplans.get(key)
        if entry is not None:
            return entry[1]
        shared = self._shared
        if shared is not None:
            nodes = (object_type, *[id(details.node) for details in field_details_list])
            hit = shared.get(nodes)
            if hit is not None:
                plan = hit[1]
                self._subplans[key] = (field_details_list, plan)
                return plan
        grouped_field_set, new_defer_usages, _ = self.collect_subfields(
            object_type, field_details_list
        )
        plan = None if new_defer_usages else self._plan(object_type, grouped_field_set)
        self._subplans[key] = (field_details_list, plan)
        if shared is not None:
            shared[nodes] = (field_details_list, plan)
        return plan

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> Any:
        plan = self._plan(parent_type, grouped_field_set) if self._fast else None
        if plan is None:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        return plan(self, parent_type, source_value, path, position_context)

    def _one(
        self,
        step: Step,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        position_context: Any,
        value: Any,
    ) -> Any:
        """One field of ``Executor.execute_fields``, for what a plan's code does not
        complete inline: ``value`` is what it read (``_UNREAD`` when it did not, or the
        read raised: then it is read again here, so a raising read is reported as
        graphql-core reports it; reads and coercions are pure). Returns the field's
        result, or ``_SKIP`` when graphql-core leaves the field out."""
        response_name, field_details_list, kind, read, attr, ident, _coerce, members, spec = step
        if kind == _TYPENAME:
            return parent_type.name
        if kind == _GENERIC:
            result = self.execute_field(
                parent_type,
                source_value,
                field_details_list,
                Path(path, response_name, parent_type.name),
                position_context,
            )
            return _SKIP if result is Undefined else result
        if value is _UNREAD:
            try:
                value = read(source_value, attr)
            except Exception as raw_error:
                self.handle_field_error(
                    raw_error,
                    spec.return_type,  # type: ignore[arg-type]
                    field_details_list,
                    Path(path, response_name, parent_type.name),
                )
                return None
        if kind == _OBJECT or kind == _LIST:
            return (self._object if kind == _OBJECT else self._list)(
                spec,
                value,
                parent_type,
                field_details_list,
                path,
                response_name,
                position_context,
            )
        if type(value) is ident:
            return value
        coerced = members.get(id(value)) if members is not None else None
        if coerced is not None:
            return coerced
        return self._leaf(spec, value, parent_type, field_details_list, path, response_name)

    # --- one field ----------------------------------------------------------------

    def _leaf(
        self,
        spec: _Spec,
        value: Any,
        parent_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        path: Path | None,
        response_name: str,
    ) -> Any:
        """complete_value for a leaf type, for what a plan's code does not complete inline."""
        if value is None or value is Undefined:
            if spec.nullable:
                return None
        elif not (isinstance(value, Exception) or self.is_awaitable(value)):
            try:
                coerced = spec.coerce(value)  # type: ignore[misc]
            except Exception as raw_error:
                self.handle_field_error(
                    raw_error,
                    spec.return_type,  # type: ignore[arg-type]
                    field_details_list,
                    Path(path, response_name, parent_type.name),
                )
                return None
            if coerced is not None and coerced is not Undefined and not self.is_awaitable(coerced):
                return coerced
        # Null in a non-null position, an exception, an awaitable, a coercion to null or
        # to an awaitable: graphql-core's own completion (coercions are pure).
        return self._generic_field(
            spec, value, parent_type, field_details_list, path, response_name, None
        )

    def _object(
        self,
        spec: _Spec,
        value: Any,
        parent_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        path: Path | None,
        response_name: str,
        position_context: Any,
    ) -> Any:
        if value is None or value is Undefined:
            if spec.nullable:
                return None
            return self._generic_field(
                spec, value, parent_type, field_details_list, path, response_name, position_context
            )
        if isinstance(value, Exception) or self.is_awaitable(value):
            return self._generic_field(
                spec, value, parent_type, field_details_list, path, response_name, position_context
            )
        field_path = Path(path, response_name, parent_type.name)
        is_type_of = spec.is_type_of
        if is_type_of is not None:
            info = (
                self._info(spec, parent_type, field_details_list, field_path)
                if spec.is_type_of_uses_info
                else None
            )
            if is_type_of(value, info) is not True:
                return self._generic_field(
                    spec,
                    value,
                    parent_type,
                    field_details_list,
                    path,
                    response_name,
                    position_context,
                )
        object_type = spec.object_type
        # collect_subfields raises for no validated document, so the plan is looked up
        # outside the guard (as _complete_list does once per list).
        plan = (
            self._subplan(object_type, field_details_list)  # type: ignore[arg-type]
            if position_context is None
            else None
        )
        if plan is not None:
            return self._guarded(
                spec,
                field_details_list,
                field_path,
                plan,
                self,
                object_type,
                value,
                field_path,
                None,
            )
        return self._guarded(
            spec,
            field_details_list,
            field_path,
            self.collect_and_execute_subfields,
            object_type,
            field_details_list,
            field_path,
            value,
            position_context,
        )

    def _guarded(
        self,
        spec: _Spec,
        field_details_list: FieldDetailsList,
        field_path: Path,
        complete: Callable[..., Any],
        *args: Any,
    ) -> Any:
        """``complete(*args)`` for one object or list field, its error located and
        propagated by graphql-core (``handle_field_error``), an awaitable result awaited
        the same way."""
        try:
            completed = complete(*args)
        except Exception as raw_error:
            return self._field_error(spec, field_details_list, field_path, raw_error)
        if type(completed) not in (dict, list) and self.is_awaitable(completed):
            return self._await_completed(
                completed,
                spec.return_type,  # type: ignore[arg-type]
                field_details_list,
                field_path,
            )
        return completed

    def _field_error(
        self,
        spec: _Spec,
        field_details_list: FieldDetailsList,
        field_path: Path,
        raw_error: Exception,
    ) -> None:
        """The field's completion raised: located and propagated by graphql-core."""
        self.handle_field_error(
            raw_error,
            spec.return_type,  # type: ignore[arg-type]
            field_details_list,
            field_path,
        )

    def _list(
        self,
        spec: _Spec,
        value: Any,
        parent_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        path: Path | None,
        response_name: str,
        position_context: Any,
    ) -> Any:
        if value is None or value is Undefined:
            if spec.nullable:
                return None
            return self._generic_field(
                spec, value, parent_type, field_details_list, path, response_name, position_context
            )
        if type(value) is list and not value:
            # The common empty ``userErrors``: nothing to complete, no path to build.
            return []
        if (
            isinstance(value, Exception)
            or self.is_awaitable(value)
            or self.is_async_iterable(value)
            or not is_iterable(value)
        ):
            return self._generic_field(
                spec, value, parent_type, field_details_list, path, response_name, position_context
            )
        field_path = Path(path, response_name, parent_type.name)
        return self._guarded(
            spec,
            field_details_list,
            field_path,
            self._complete_list,
            spec,
            value,
            parent_type,
            field_details_list,
            field_path,
            position_context,
        )

    def _complete_list(
        self,
        spec: _Spec,
        items: Any,
        parent_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        """Executor.complete_iterable_value (no @stream) with complete_list_item_value
        inlined for plain items; other items go through graphql-core's own."""
        is_awaitable = self.is_awaitable
        item_type: GraphQLOutputType = spec.item_type  # type: ignore[assignment]
        item_nullable = spec.item_nullable
        item_is_leaf = spec.item_kind == _LEAF
        coerce = spec.coerce
        members = spec.members
        object_type: GraphQLObjectType = spec.object_type  # type: ignore[assignment]
        is_type_of = spec.is_type_of
        info: GraphQLResolveInfo | None = None
        # Every item completes the same sub-selection on the same type: one plan.
        plan = (
            self._subplan(object_type, field_details_list)
            if not item_is_leaf and position_context is None
            else None
        )
        completed_results: list[Any] = []
        append = completed_results.append
        awaitable_indices: list[int] = []
        iterator = iter(items)
        index = 0
        try:
            while True:
                try:
                    item = next(iterator)
                except StopIteration:
                    break
                item_path = Path(path, index, None)
                plain = type(item) in _PLAIN
                if not plain and (item is None or item is Undefined):
                    if item_nullable:
                        append(None)
                        index += 1
                        continue
                elif item_is_leaf and members is not None and id(item) in members:
                    append(members[id(item)])
                    index += 1
                    continue
                elif plain or not (isinstance(item, Exception) or is_awaitable(item)):
                    if item_is_leaf:
                        try:
                            coerced = coerce(item)  # type: ignore[misc]
                        except Exception as raw_error:
                            self.handle_field_error(
                                raw_error, item_type, field_details_list, item_path
                            )
                            append(None)
                            index += 1
                            continue
                        if (
                            coerced is not None
                            and coerced is not Undefined
                            and (type(coerced) is str or not is_awaitable(coerced))
                        ):
                            append(coerced)
                            index += 1
                            continue
                    else:
                        if is_type_of is not None and spec.is_type_of_uses_info and info is None:
                            info = self._info(spec, parent_type, field_details_list, path)
                        if is_type_of is None or is_type_of(item, info) is True:
                            try:
                                completed_item = (
                                    plan(self, object_type, item, item_path, None)
                                    if plan is not None
                                    else self.collect_and_execute_subfields(
                                        object_type,
                                        field_details_list,
                                        item_path,
                                        item,
                                        position_context,
                                    )
                                )
                            except Exception as raw_error:
                                self.handle_field_error(
                                    raw_error, item_type, field_details_list, item_path
                                )
                                append(None)
                                index += 1
                                continue
                            if type(completed_item) is not dict and is_awaitable(completed_item):
                                append(
                                    self._await_completed(
                                        completed_item, item_type, field_details_list, item_path
                                    )
                                )
                                awaitable_indices.append(index)
                            else:
                                append(completed_item)
                            index += 1
                            continue
                # Anything else: graphql-core's own item completion.
                if info is None:
                    info = self._info(spec, parent_type, field_details_list, path)
                if is_awaitable(item):
                    append(
                        self.complete_awaitable_list_item_value(
                            item, item_type, field_details_list, info, item_path, position_context
                        )
                    )
                    awaitable_indices.append(index)
                elif self.complete_list_item_value(
                    item,
                    completed_results,
                    item_type,
                    field_details_list,
                    info,
                    item_path,
                    position_context,
                ):
                    awaitable_indices.append(index)
                index += 1
        except Exception:
            pending = [completed_results[i] for i in awaitable_indices]
            pending.extend(item for item in iterator if is_awaitable(item))
            if pending:
                self.settle_in_background(pending)
            raise
        if not awaitable_indices:
            return completed_results

        async def get_completed_results() -> list[Any]:
            if len(awaitable_indices) == 1:
                i = awaitable_indices[0]
                completed_results[i] = await completed_results[i]
            else:
                awaited = await gather_with_cancel(
                    *(completed_results[i] for i in awaitable_indices)
                )
                for i, sub_result in zip(awaitable_indices, awaited, strict=True):
                    completed_results[i] = sub_result
            return completed_results

        return get_completed_results()

    # --- graphql-core's own path, from a value already read ---------------------------

    def _info(
        self,
        spec: _Spec,
        parent_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        field_path: Path,
    ) -> GraphQLResolveInfo:
        return self.build_resolve_info(
            spec.field_def,  # type: ignore[arg-type]
            to_nodes(field_details_list),
            parent_type,
            field_path,
        )

    def _generic_field(
        self,
        spec: _Spec,
        result: Any,
        parent_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        path: Path | None,
        response_name: str,
        position_context: Any,
    ) -> Any:
        """Executor.execute_field after its resolver call, for the value ``result``."""
        field_path = Path(path, response_name, parent_type.name)
        return_type: GraphQLOutputType = spec.return_type  # type: ignore[assignment]
        info = self._info(spec, parent_type, field_details_list, field_path)
        try:
            if self.is_awaitable(result):
                return self.complete_awaitable_value(
                    return_type, field_details_list, info, field_path, result, position_context
                )
            completed = self.complete_value(
                return_type, field_details_list, info, field_path, result, position_context
            )
            if self.is_awaitable(completed):
                return self._await_completed(completed, return_type, field_details_list, field_path)
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, field_path)
            return None
        return completed

    async def _await_completed(
        self,
        completed: Awaitable[Any],
        return_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        path: Path,
    ) -> Any:
        try:
            return await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None


__all__ = ["FastExecutor", "compile_spec"]
