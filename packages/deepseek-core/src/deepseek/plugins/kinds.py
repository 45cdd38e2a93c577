"""The component kind of a registration hook, one rule both ways: ``deepseek_register_<kinds>``
-> the kind it registers (:func:`hook_kind`: core's table, the kind its spec declares with
:func:`registers_kind`, else the singular of ``<kinds>``) and a kind -> its hook
(:func:`registration_hook_of`); the registration hooks of a plugin manager
(:func:`registration_hooks`) and the readings the host takes for their kinds (:func:`kind_aliases`), the hookspecs a plugin adds, taken out again when it fails
(:func:`hookspecs_added`, :func:`remove_hookspecs`), and the refusal of a plugin's hookspec
registering a kind another hook registers, or whose name does not tell its kind."""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import pluggy

from deepseek import hookspecs

PREFIX = "deepseek_register_"

_Spec = TypeVar("_Spec", bound=Callable[..., Any])

KIND_MARK = "deepseek_registers_kind"
"""The attribute :func:`registers_kind` sets on the spec function it decorates, the kind: data of
the hookspec itself, read by a host only from the hookspecs added to its plugin manager
(:func:`declared_kind`), so that a kind one plugin declares is no other host's."""

KIND_RE = re.compile(r"^[a-z][a-z0-9_]*\Z")  # a component kind: lower-case words joined by "_" (lr_schedule)


def check_registration_spec(decorator: str, spec: Callable[..., Any], fix: str) -> None:
    """``TypeError`` when ``decorator`` (``reserves``, ``registers_kind``) decorates a function
    that is no ``deepseek_register_<kinds>`` hookspec; ``fix`` says what the decorator is for."""
    if not spec.__name__.startswith(PREFIX):
        raise TypeError(f"{decorator}: {spec.__name__} is no registration hookspec; {fix} a "
                        "deepseek_register_<kinds> hookspec")


def registers_kind(kind: str) -> Callable[[_Spec], _Spec]:
    """Decorate a registration hookspec (a ``deepseek_register_<kinds>`` function a plugin adds,
    next to ``@hookspec``) to declare the component kind it registers where the singular of
    ``<kinds>`` (:func:`kind_from_hook`) is not it: ``@registers_kind("index")`` on
    ``deepseek_register_indices``. A bad kind, or core's own, is a ``TypeError`` here."""
    core = {k: hook for hook, k in hookspecs.REGISTRATION_HOOKS.items()}
    if not (isinstance(kind, str) and KIND_RE.match(kind)) or kind in core:
        why = f"core's kind of {core[kind]}" if kind in core else "no lower-case kind name (words joined by '_')"
        raise TypeError(f"registers_kind: {kind!r} is {why}; declare a kind of your own, such as 'index'")

    def mark(spec: _Spec) -> _Spec:
        check_registration_spec("registers_kind", spec, "declare the kind of")
        setattr(spec, KIND_MARK, kind)  # noqa: B010  (the marker's name is one constant)
        return spec

    return mark


def spec_marks(spec: Callable[..., Any] | None) -> dict[str, Any]:
    """The attributes of hookspec function ``spec`` (its ``__dict__``; a method's function's), where
    :func:`registers_kind` and :func:`~deepseek.plugins.registrar.reserves` leave what they declare;
    ``{}`` for ``None``."""
    if spec is None:
        return {}
    return vars(spec.__func__ if inspect.ismethod(spec) else spec)


def declared_kind(spec: Callable[..., Any] | None) -> str | None:
    """The kind hookspec function ``spec`` declares with :func:`registers_kind`, else ``None``."""
    return spec_marks(spec).get(KIND_MARK)


_ES = ("tches", "sses", "shes", "xes")  # batches, passes, meshes, boxes: the singular drops "es"
_UNCLEAR = ("ss", "us", "ches", "ses", "zes")  # loss, status: no plural; caches / batches, bases / buses, sizes / quizzes


def kind_readings(hook_name: str) -> tuple[str, ...]:
    """The singulars a ``deepseek_register_<kinds>`` name can be the plural of: one
    (``tuners``, ``batches``, ``passes``, ``boxes``; ``widget``, without a final ``s``, is its own;
    ``analysis``, ``basis``: ``-sis`` is a singular, whose plural ``-ses`` reads as none), two where
    English reads the ending both ways and the rule cannot tell which (``-ies``: ``categories`` /
    ``cookies``, category and cookie; ``-is``: ``apis`` / ``axis``, api and axis itself: such a
    name's kind is its word as written, :func:`kind_from_hook`), or none (``caches`` / ``batches``,
    ``bases`` / ``buses``, ``sizes`` / ``quizzes``, ``loss``, ``status``: the hookspec declares its
    kind, :func:`registers_kind`; :func:`hookspecs_added` refuses it otherwise). Either reading
    names the same kind in lookups (:func:`kind_aliases`)."""
    word = hook_name.removeprefix(PREFIX)
    if not word.endswith("s") or word.endswith("sis"):
        return (word,)
    if word.endswith(_ES):
        return (word[:-2],)
    if word.endswith(_UNCLEAR):
        return ()
    if re.search(r"[^aeiou]ies\Z", word):
        return (word[:-3] + "y", word[:-1])
    return (word[:-1], word) if word.endswith("is") else (word[:-1],)


def kind_from_hook(hook_name: str) -> str | None:
    """The component kind a ``deepseek_register_<kinds>`` hook registers: its one
    :func:`kind_readings` (``batches``: ``batch``); where English reads the name two ways, the word
    as written (``cookies``, ``categories``, ``axis``: records, ``deepseek plugins list`` and
    suggestions name no singular the author did not write, such as ``cooky``, ``categorie`` or
    ``axi``; the host takes both readings for it, :func:`kind_aliases`, and a hookspec that means
    one declares it, :func:`registers_kind`); ``None`` where the name does not tell it."""
    readings = kind_readings(hook_name)
    if len(readings) == 2:
        return hook_name.removeprefix(PREFIX)
    return readings[0] if readings else None


def _plural(kind: str) -> str:
    """The English plural of ``kind``, :func:`kind_from_hook` read backwards: strategy -> strategies,
    pass -> passes, day -> days, tuner -> tuners; a ``-sis`` kind is its own hook's word (analysis),
    and so is a word read two ways, the kind of such a hook (cookies, axis). Where the rule does not
    read it back to ``kind`` (cache -> caches), only a hookspec declaring ``kind`` registers it;
    cookie -> cookies reads back as one of that hook's readings (:func:`kind_aliases`)."""
    if kind.endswith("sis") or len(kind_readings(PREFIX + kind)) == 2:
        return kind
    if re.search(r"[^aeiou]y\Z", kind):
        return kind[:-1] + "ies"
    return kind + ("es" if kind.endswith(("s", "x", "z", "ch", "sh")) else "s")


def hook_kind(hook_name: str, spec: Callable[..., Any]) -> str | None:
    """The component kind registration hook ``hook_name`` (spec function ``spec``) registers:
    core's (:data:`~deepseek.hookspecs.REGISTRATION_HOOKS`), the one its spec declares
    (:func:`registers_kind`), else the singular of the name's last word (:func:`kind_from_hook`;
    ``None`` where the name does not tell it)."""
    return hookspecs.REGISTRATION_HOOKS.get(hook_name) or declared_kind(spec) or kind_from_hook(hook_name)


def registration_hook_of(kind: str, pm: pluggy.PluginManager | None = None) -> str:
    """The registration hook of component kind ``kind``, :func:`hook_kind`'s rule read backwards:
    core's hook, the hookspec of ``pm`` (a host's plugin manager; none: core's hooks and the name
    rule only) that declares ``kind`` (:func:`registers_kind`), else ``deepseek_register_`` and the
    plural of ``kind`` (:func:`_plural`; for a kind no name tells, such as ``cache``, a name the
    host refuses undeclared: only a declared hook registers it)."""
    core = next((hook for hook, k in hookspecs.REGISTRATION_HOOKS.items() if k == kind), None)
    specs = _registration_specs(pm) if pm is not None else {}
    declared = next((name for name, spec in specs.items() if declared_kind(spec) == kind), None)
    return core or declared or PREFIX + _plural(kind)


def _registration_specs(pm: pluggy.PluginManager) -> dict[str, Callable[..., Any]]:
    """Hook name -> spec function of ``pm``'s ``deepseek_register_*`` hooks whose spec's only
    argument is ``register``."""
    specs = {}
    for hook_name in sorted(dir(pm.hook)):
        hook = getattr(pm.hook, hook_name) if hook_name.startswith(PREFIX) else None
        if isinstance(hook, pluggy.HookCaller) and hook.spec is not None and tuple(hook.spec.argnames) == ("register",):
            specs[hook_name] = hook.spec.function
    return specs


def registration_hooks(pm: pluggy.PluginManager) -> dict[str, str]:
    """Registration hook name -> component kind of ``pm``'s hooks, including hooks plugins added.

    A plugin's own hookspec counts when its name starts with ``deepseek_register_`` and its
    only argument is ``register``; the kind is the one its spec declares
    (:func:`registers_kind`), else the singular of the rest of the name
    (``deepseek_register_compressors`` -> ``compressor``): :func:`hook_kind`. A name that does not
    tell its kind without a declaration (``deepseek_register_caches``) is none.
    """
    hooks = dict(hookspecs.REGISTRATION_HOOKS)
    for hook_name, spec in _registration_specs(pm).items():
        if (kind := hook_kind(hook_name, spec)) is not None:
            hooks.setdefault(hook_name, kind)
    return hooks


def kind_aliases(pm: pluggy.PluginManager) -> dict[str, str]:
    """Reading -> kind, of ``pm``'s registration hooks whose name reads two ways
    (:func:`kind_readings`) and gives their kind (not declared): ``cooky`` and ``cookie`` ->
    ``cookies`` for ``deepseek_register_cookies``, ``axi`` -> ``axis`` for
    ``deepseek_register_axis``. The host takes either reading for the kind where that is
    unambiguous against what is registered: a reading that is a kind some hook registers, or a
    reading of two hooks, is none."""
    hooks = registration_hooks(pm)
    readers: dict[str, list[str]] = {}
    for hook_name, kind in hooks.items():
        for reading in _readings(hook_name, kind):
            readers.setdefault(reading, []).append(kind)
    kinds = set(hooks.values())
    return {alias: k[0] for alias, k in readers.items() if len(k) == 1 and alias not in kinds}


def _readings(hook_name: str, kind: str | None) -> tuple[str, ...]:
    """The :func:`kind_readings` of ``hook_name`` other than its ``kind`` where the hook's kind is
    its name's word read two ways (not declared), else none."""
    readings = kind_readings(hook_name)
    if len(readings) != 2 or kind != hook_name.removeprefix(PREFIX):
        return ()
    return tuple(r for r in readings if r != kind)


def hook_callers(pm: pluggy.PluginManager) -> dict[str, pluggy.HookCaller]:
    """Hook name -> caller of every hook on ``pm``'s relay, specified or not."""
    return {n: h for n in dir(pm.hook) if isinstance(h := getattr(pm.hook, n), pluggy.HookCaller)}


class KindRefused(Exception):
    """A plugin added a registration hookspec whose component kind another hook registers, whose
    name does not tell its kind (:func:`kind_from_hook`) and which declares none, or whose name
    reads two ways where a reading is another hook's kind, or whose kind is another hook's reading
    (:func:`kind_aliases`)."""


@contextlib.contextmanager
def hookspecs_added(pm: pluggy.PluginManager, added: dict[str, bool]) -> Iterator[None]:
    """Run the block (a plugin's ``deepseek_add_hookspecs``), recording in ``added`` each hookspec
    it adds to ``pm`` (name -> whether the hook is new; ``False``: it had only implementations, an
    earlier plugin's optionalhook), those it added before raising too: :func:`remove_hookspecs`
    takes them out again on any failure of the plugin (the host's ``_drop``). A registration
    hookspec it adds whose kind is one another hook of ``pm`` registers (core's ``model``, from a
    spec named ``deepseek_register_model``) would mix its components into that kind, and one whose
    name does not tell its kind (``deepseek_register_caches``: cache or cach?) without
    :func:`registers_kind` would register under a wrong one: :class:`KindRefused` is raised, one
    line naming the hooks, and the host drops the plugin."""
    callers = hook_callers(pm)
    before = registration_hooks(pm)
    unspecified = {n for n, h in callers.items() if h.spec is None}
    try:
        yield
    finally:  # what it added before raising too
        added.update({n: n not in callers for n, h in hook_callers(pm).items()
                      if h.spec is not None and (n not in callers or n in unspecified)})
    owners = {kind: hook for hook, kind in before.items()}
    readers = {r: hook for hook, kind in before.items() for r in _readings(hook, kind)}
    for hook_name, spec in _registration_specs(pm).items():
        kind = hook_kind(hook_name, spec)
        if hook_name in added and kind is None:
            word = hook_name.removeprefix(PREFIX)
            raise KindRefused(f"adds hookspec {hook_name}, whose name does not tell its component kind ({word!r} is the "
                              "plural of more than one singular, or of none: caches / batches, bases / buses, sizes / "
                              "quizzes, loss, status); declare the kind with @registers_kind(kind) next to @hookspec "
                              "(docs/plugins.md section 7)")
        if hook_name in added and kind in owners:
            owner, own = owners[kind], "a kind of its own (a deepseek_register_<kinds> name, or @registers_kind(kind))"
            if owner not in before:  # both hookspecs are this call's: neither stays, so neither is to implement
                raise KindRefused(f"adds hookspecs {owner} and {hook_name}, both of component kind {kind!r}; keep one, "
                                  f"or give the other {own}")
            whose = (f"is core's ({owner})" if owner in hookspecs.REGISTRATION_HOOKS
                     else f"is registered by {owner}, which a loaded plugin added")
            raise KindRefused(f"adds hookspec {hook_name}, whose component kind {kind!r} {whose}; implement "
                              f"{owner} instead, or give the hookspec {own}")
        readings = _readings(hook_name, kind)
        taken = next((r for r in readings if r in owners), None)
        if hook_name in added and (taken is not None or kind in readers):  # a reading would name two kinds
            why = (f"whose name reads as {' or '.join(map(repr, kind_readings(hook_name)))}, and {taken!r} is registered "
                   f"by {owners[taken]}" if taken is not None else f"whose component kind {kind!r} is how "
                   f"{readers[kind]} reads too ({' or '.join(map(repr, kind_readings(readers[kind])))})")
            raise KindRefused(f"adds hookspec {hook_name}, {why}; declare its kind with @registers_kind(kind) next to "
                              "@hookspec (docs/plugins.md section 7)")
        if kind is not None:
            owners.setdefault(kind, hook_name)
        for reading in readings:
            readers.setdefault(reading, hook_name)


def remove_hookspecs(pm: pluggy.PluginManager, added: dict[str, bool]) -> dict[str, str]:
    """Take the hookspecs a dropped plugin added (:func:`hookspecs_added`'s ``added``, emptied) out
    of ``pm``: a new hook that no plugin implements leaves pluggy's hook relay (one attribute
    each), any other is unspecified again, its implementations then those of an unknown hook.
    Returns every hook it took out, name -> the component kind it registered (``""``: no
    registration hook): the host reports their implementers after the registration pass."""
    kinds, left = registration_hooks(pm), {}
    for name, new in added.items():
        hook = getattr(pm.hook, name, None)
        if not isinstance(hook, pluggy.HookCaller):
            continue
        left[name] = kinds.get(name, "")
        if new and not hook.get_hookimpls():
            delattr(pm.hook, name)
        else:
            hook.spec = None
    added.clear()
    return left


def prune_hooks(pm: pluggy.PluginManager, names: Iterable[str]) -> None:
    """Take each of ``names`` that is neither specified nor implemented off ``pm``'s hook relay (a
    withdrawn hookspec's hook whose last implementer left), so that no name stays to be offered."""
    for name, hook in hook_callers(pm).items():
        if name in names and hook.spec is None and not hook.get_hookimpls():
            delattr(pm.hook, name)
