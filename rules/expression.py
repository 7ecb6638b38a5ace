"""The condition language of rules: a small, safe expression language over a device's point
values, built on simpleeval (never Python ``eval``); no I/O.

Only point names, literals, ``and``/``or``/``not``, comparisons, arithmetic, ``x if c else y``
and a few functions are allowed: ``any_tag(tag)``, ``all_tag(tag)``, ``count_tag(tag)``,
``any_bad_tag(tag)``, ``count_bad_tag(tag)``, ``abs``, ``min``, ``max``. Logic is three-valued
(Kleene): a point that is missing or bad is *unknown*, and so is anything that depends on it,
but ``unknown or True`` is ``True`` and ``unknown and False`` is ``False``.
``Condition.evaluate`` returns ``True``, ``False`` or ``None`` (unknown).

The ``*_bad_tag`` functions look at a point's quality, not its value: a point of the tag is
*bad* when its device reported it bad (``Context.bad``: it could not be read, or the device
itself calls it faulty or out of service), *good* when it has a value, and unknown when it
was never reported or was forgotten (its device went offline, it was reported stale). So
``any_bad_tag(tag)`` is true as soon as one point of the tag is reported bad, false when
every one is good, unknown otherwise; ``count_bad_tag(tag)`` is the number of bad points,
unknown while any point of the tag is unknown.

Nothing a condition says can exhaust memory or time: the text is at most
``MAX_CONDITION_LENGTH`` characters and ``MAX_DEPTH`` levels deep (checked at compile), ``**``,
shifts and attribute access are not in the language, and the operators that can grow a value
are simpleeval's safe ones: ``*`` and ``+`` refuse to build a string over simpleeval's
``MAX_STRING_LENGTH`` (``'x' * 10**12`` is an error, not a gigabyte), and ``%`` refuses string
formatting (``'%999999999d' % 1``). Integers can only grow by multiplying literals, so their
size is bounded by the text's length."""

from __future__ import annotations

import ast
import operator as op
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from simpleeval import InvalidExpression, SimpleEval, safe_add, safe_mult

from facility.messages import Value


class _Unknown:
    """The value of a missing or bad point, and of anything computed from it."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        raise TypeError("unknown has no truth value; use three-valued helpers")

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()
MAX_CONDITION_LENGTH: Final = 2000
MAX_DEPTH: Final = 100
FUNCTIONS: Final = frozenset({"any_tag", "all_tag", "count_tag", "any_bad_tag",
                              "count_bad_tag", "abs", "min", "max"})


class ConditionError(ValueError):
    """A condition that cannot be compiled: syntax, a forbidden construct or an unknown name."""

    def __init__(self, expression: str, reason: str) -> None:
        self.expression = expression
        self.reason = reason
        super().__init__(f"condition {expression!r}: {reason}")


def _safe_mod(a: Any, b: Any) -> Any:
    """``%`` on numbers only: on a string it is printf formatting, whose width can ask for any
    amount of memory."""
    if isinstance(a, str | bytes):
        raise TypeError("% is not defined for text (no string formatting)")
    return op.mod(a, b)


_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: safe_add, ast.Sub: op.sub, ast.Mult: safe_mult, ast.Div: op.truediv,
    ast.Mod: _safe_mod, ast.USub: op.neg, ast.UAdd: op.pos,
    ast.Eq: op.eq, ast.NotEq: op.ne, ast.Gt: op.gt, ast.Lt: op.lt, ast.GtE: op.ge,
    ast.LtE: op.le,
}
_ALLOWED_NODES: tuple[type, ...] = (
    ast.Expression, ast.Expr, ast.Name, ast.Load, ast.Constant, ast.UnaryOp, ast.BinOp,
    ast.BoolOp, ast.Compare, ast.IfExp, ast.Call, ast.And, ast.Or, ast.Not,
    *_OPERATORS,
)


def _strict(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An operator that yields unknown when any operand is unknown."""

    def wrapped(*args: Any) -> Any:
        for a in args:
            if a is UNKNOWN:
                return UNKNOWN
        return fn(*args)

    return wrapped


def _truth(v: Any) -> bool | _Unknown:
    return UNKNOWN if v is UNKNOWN else bool(v)


_STRICT_OPERATORS: Final = {k: _strict(v) for k, v in _OPERATORS.items()}
_PLAIN_FUNCTIONS: Final = {"abs": _strict(abs), "min": _strict(min), "max": _strict(max)}


class _Evaluator(SimpleEval):  # type: ignore[misc]
    """simpleeval with Kleene logic for and/or/not/if and unknown-propagating operators.
    Building one costs more than evaluating a condition: one per thread is reused, its
    ``names`` and ``functions`` set for each evaluation (see ``_evaluator``)."""

    def __init__(self) -> None:
        super().__init__(operators=_STRICT_OPERATORS, functions=dict(_PLAIN_FUNCTIONS),
                         names={})

    def _eval_unaryop(self, node: ast.UnaryOp) -> Any:
        if isinstance(node.op, ast.Not):
            v = _truth(self._eval(node.operand))
            return UNKNOWN if v is UNKNOWN else not v
        return super()._eval_unaryop(node)

    def _eval_boolop(self, node: ast.BoolOp) -> Any:
        stop = not isinstance(node.op, ast.And)  # And stops on False, Or stops on True
        unknown = False
        for value in node.values:
            v = _truth(self._eval(value))
            if v is UNKNOWN:
                unknown = True
            elif v is stop:
                return stop
        return UNKNOWN if unknown else not stop

    def _eval_compare(self, node: ast.Compare) -> Any:
        left = self._eval(node.left)
        result: Any = True
        for operation, comp in zip(node.ops, node.comparators, strict=True):
            right = self._eval(comp)
            r = self.operators[type(operation)](left, right)
            if r is UNKNOWN:
                result = UNKNOWN
            elif not r:
                return False
            left = right
        return result

    def _eval_ifexp(self, node: ast.IfExp) -> Any:
        test = _truth(self._eval(node.test))
        if test is UNKNOWN:
            return UNKNOWN
        return self._eval(node.body) if test else self._eval(node.orelse)


_local = threading.local()


def _evaluator() -> _Evaluator:
    """This thread's evaluator (an evaluation never starts another, so one is enough)."""
    ev: _Evaluator | None = getattr(_local, "evaluator", None)
    if ev is None:
        ev = _local.evaluator = _Evaluator()
    return ev


@dataclass(frozen=True, slots=True)
class Context:
    """What a condition sees: good point values, each point's tags, and the points reported
    bad with what their device said of them (``flags``, "" when it said nothing)."""

    values: Mapping[str, Value]
    tags: Mapping[str, tuple[str, ...]]
    bad: Mapping[str, str] = field(default_factory=dict)


def _tag_functions(ctx: Context) -> dict[str, Callable[..., Any]]:
    def tagged(tag: str) -> list[Any]:
        return [ctx.values.get(p, UNKNOWN) for p, t in ctx.tags.items() if tag in t]

    def any_tag(tag: str) -> Any:
        vals = [_truth(v) for v in tagged(tag)]
        return True if True in vals else (UNKNOWN if UNKNOWN in vals else False)

    def all_tag(tag: str) -> Any:
        vals = [_truth(v) for v in tagged(tag)]
        return False if False in vals else (UNKNOWN if UNKNOWN in vals else True)

    def count_tag(tag: str) -> Any:
        vals = [_truth(v) for v in tagged(tag)]
        return UNKNOWN if UNKNOWN in vals else sum(1 for v in vals if v)

    def badness(tag: str) -> list[Any]:
        """Per point of the tag: True bad, False good, UNKNOWN neither."""
        return [True if p in ctx.bad else (False if p in ctx.values else UNKNOWN)
                for p, t in ctx.tags.items() if tag in t]

    def any_bad_tag(tag: str) -> Any:
        vals = badness(tag)
        return True if True in vals else (UNKNOWN if UNKNOWN in vals else False)

    def count_bad_tag(tag: str) -> Any:
        vals = badness(tag)
        return UNKNOWN if UNKNOWN in vals else sum(1 for v in vals if v)

    return {
        "any_tag": any_tag, "all_tag": all_tag, "count_tag": count_tag,
        "any_bad_tag": any_bad_tag, "count_bad_tag": count_bad_tag, **_PLAIN_FUNCTIONS,
    }


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled condition: its text, parsed tree and the point names it reads."""

    text: str
    tree: ast.AST
    names: frozenset[str]
    tags: frozenset[str]

    @classmethod
    def compile(cls, text: str) -> Condition:
        """Parse and check a condition; ConditionError says what is not allowed."""
        if len(text) > MAX_CONDITION_LENGTH:
            raise ConditionError(text[:80] + "...",
                                 f"longer than {MAX_CONDITION_LENGTH} characters")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ConditionError(text, f"syntax error: {exc.msg}") from None
        except (RecursionError, MemoryError, ValueError) as exc:
            raise ConditionError(text, f"cannot parse: {type(exc).__name__}") from None
        if _depth(tree) > MAX_DEPTH:
            raise ConditionError(text, f"nested deeper than {MAX_DEPTH} levels")
        names: set[str] = set()
        tags: set[str] = set()
        for node in ast.walk(tree):
            if not isinstance(node, _ALLOWED_NODES):
                raise ConditionError(text, f"{type(node).__name__} is not allowed")
            if isinstance(node, ast.Call):
                tags.update(_check_call(text, node))
            elif isinstance(node, ast.Name) and node.id not in FUNCTIONS:
                names.add(node.id)
        return cls(text, tree.body, frozenset(names), frozenset(tags))

    def evaluate(self, ctx: Context) -> bool | None:
        """True, False, or None when the outcome depends on a missing or bad point."""
        values = ctx.values
        ev = _evaluator()
        ev.names = {n: values.get(n, UNKNOWN) for n in self.names}
        ev.functions = _tag_functions(ctx) if self.tags else _PLAIN_FUNCTIONS
        try:
            result = ev.eval(self.text, self.tree)
        except (InvalidExpression, TypeError, ArithmeticError) as exc:
            # a type clash (a string point compared with a number), a division by zero, or
            # simpleeval's limits (IterableTooLong is an InvalidExpression)
            raise ConditionError(self.text, f"cannot evaluate: {exc}") from exc
        finally:
            ev.names = {}  # hold no values between evaluations
        return None if result is UNKNOWN else bool(result)


def _depth(node: ast.AST) -> int:
    """The depth of the tree (iteratively: a deep tree must not overflow the stack here)."""
    deepest, todo = 0, [(node, 1)]
    while todo:
        current, level = todo.pop()
        deepest = max(deepest, level)
        todo.extend((child, level + 1) for child in ast.iter_child_nodes(current))
    return deepest


def _check_call(text: str, node: ast.Call) -> set[str]:
    if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
        raise ConditionError(text, f"only the functions {sorted(FUNCTIONS)} may be called")
    if node.keywords:
        raise ConditionError(text, f"{node.func.id}() takes no keyword arguments")
    if node.func.id.endswith("_tag"):
        arg = node.args[0] if len(node.args) == 1 else None
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            raise ConditionError(text, f"{node.func.id}() takes one quoted tag")
        return {arg.value}
    return set()
