"""Calls into a component's code at the boundary where the framework hands over to it (a
schedule's ``lr_at``, a dataset's ``__next__``, enterprise's fusion ``forward`` and compressor
``compress``): what it raises comes out as one line naming the component and its distribution.

deepseek's own one-line errors (:class:`~deepseek.errors.DeepseekError`: a refusal the plugin
raised on purpose, or a check of ours inside), another rank's error (:class:`~deepseek.errors.RankError`),
a collective that failed because another rank of the job died
(:func:`~deepseek.training.launcher_env.peer_lost`: FSDP's all-gather inside a model's
``forward``, whose rank then says it lost its peer and the launcher names the one that failed)
and running out of memory pass through as they are; anything else is a bug in the plugin and becomes a :class:`~deepseek.errors.PluginError`
(exit code 1, as for a plugin that fails to load or registers something invalid).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from deepseek.errors import DeepseekError, PluginError, RankError, UsageError

if TYPE_CHECKING:
    from deepseek.plugins.records import Component

SCRIPT_DIST = "deepseek-script"
"""The distribution :func:`deepseek.fit` registers a script's own model and data under."""

PLUGIN_BUG = "a bug in the plugin: upgrade it or report it to its authors"
"""What a line blaming a component's code at run time tells its user, after what it did wrong.
The component itself is named by its registration's
:attr:`~deepseek.plugins.records.Component.label` (``model 'acme.mlp' (deepseek-acme 0.1.0,
registered by acme.plugin)``), whatever its kind: models, datasets, strategies, optimizers,
schedules, trackers, executors and compressors alike."""


def broken_answer(label: str, what: str) -> PluginError:
    """The one line for what a component's code handed back against its contract (an object its
    target built, a method's answer, a forward's output): ``<label>: <what>; a bug in the plugin:
    ...`` (:data:`PLUGIN_BUG`), a :class:`PluginError` (exit code 1), never a fault of the user's
    config or data. ``label`` names the component and its distribution
    (:attr:`~deepseek.plugins.records.Component.label`); ``what`` says what it returned, what was
    wanted and where the contract is documented. What the user's own keys cause (a value the
    component's ``Options`` refuses) is its ``ConfigError`` instead, raised before it is called."""
    return PluginError(f"{label}: {what}; {PLUGIN_BUG}")


class BrokenAnswer(RuntimeError):
    """What a component's code handed back against its contract, found by deepseek's check of the
    answer (so no frame of the component's package raised it): its message is ``what`` of
    :func:`broken_answer`. Raised in the block that blames that component (:func:`blamed_on`, a
    ``model_calls`` block for a model's answer), it becomes that component's
    :func:`broken_answer` there whatever code raised it; where the block blames nothing (deepseek's
    own component: our internal error, its traceback kept) it passes as it is; in a script's
    component's block it is the script's one-line ``UsageError`` (:func:`scripts_own`). A check
    that has the component's label raises :func:`broken_answer` itself.

    Once a block of that component blamed nothing (:func:`unblamed`), the answer is
    :attr:`settled`: an outer block blaming another component (a strategy's ``train_step``
    around the model's calls) passes it as it is too, never blaming the answer on that one."""

    settled: bool = False
    """Whether a block of the component whose answer this is found it blames nothing."""


@contextlib.contextmanager
def unblamed() -> Iterator[None]:
    """The block of a component whose errors are blamed on no plugin (deepseek's own, a
    script's): what it raises passes as it is, a :class:`BrokenAnswer` marked
    :attr:`~BrokenAnswer.settled` on its way."""
    try:
        yield
    except BrokenAnswer as exc:
        exc.settled = True
        raise


@contextlib.contextmanager
def scripts_own() -> Iterator[None]:
    """The block of a script's own component (the model a script hands to :func:`deepseek.fit`,
    :data:`SCRIPT_DIST`): what its code raises passes as it is, its traceback for the script; a
    :class:`BrokenAnswer` (that model answering outside its contract, a loss per row) is the
    script's :class:`~deepseek.errors.UsageError`, one line (exit code 2 under ``deepseek run``):
    the script's author is the user, and the fix is in the script."""
    try:
        yield
    except BrokenAnswer as exc:
        raise UsageError(f"the model given to deepseek.fit: {exc}") from None


def _unblamed_calls(label: str | None, package: str | None) -> contextlib.AbstractContextManager[None]:
    """The block of a component blamed on no plugin (``label`` or ``package`` ``None``): a
    script's (no label, its own code's ``package``: :func:`scripts_own`) or deepseek's own (its
    errors are ours: :func:`unblamed`)."""
    return scripts_own() if label is None and package is not None else unblamed()


def answer_error(calls: Callable[[str], contextlib.AbstractContextManager[None]], call: str, what: str) -> Exception:
    """The error a component's broken answer ``what`` (a :class:`BrokenAnswer`'s message) is in
    the component's block ``calls(call)`` (a model's ``model_calls``), returned, not raised: for a
    check whose error is raised later or on every rank (a pipeline's loss, refused after its
    step). Its :func:`broken_answer` where the block blames the component, a script's
    ``UsageError`` (:func:`scripts_own`), else the :class:`BrokenAnswer` itself."""
    try:
        with calls(call):
            raise BrokenAnswer(what)
    except (BrokenAnswer, PluginError, UsageError) as exc:  # UsageError: a script's model (scripts_own)
        return exc


def blamed_error(calls: Callable[[str], contextlib.AbstractContextManager[None]], call: str,
                 exc: Exception) -> Exception | None:
    """What the component's block ``calls(call)`` (a model's ``model_calls``) makes of ``exc``,
    caught outside it (a variant of ``deepseek bench latency`` that may fail on its own, reported
    and left out): the error it becomes there (a plugin's code raised it: its one
    :class:`PluginError` line; a broken answer of a script's model: its ``UsageError``), or
    ``None`` where the block lets it pass as it is (not the component's doing, or deepseek's own
    or a script's component)."""
    try:
        with calls(call):
            raise exc
    except Exception as out:  # noqa: BLE001 - exc itself, or what the block made of it
        return None if out is exc else out
    return None


def blames(component: Component) -> bool:
    """Whether what ``component``'s code raises is reported as a bug of its plugin: not for the
    model and data a script hands to :func:`deepseek.fit` (:data:`SCRIPT_DIST`), whose exceptions
    reach the script as they are, its own traceback with them."""
    return component.dist != SCRIPT_DIST


@contextlib.contextmanager
def blamed_on(label: str | None, call: str, *, package: str | None = None,
              raised_there: bool = False) -> Iterator[None]:
    """Run the block; an exception it raises (see the module docstring) becomes a one-line
    :class:`PluginError`: ``<label>: <call> raised <Type>: <message>; ...`` (``label`` a
    component's :attr:`~deepseek.plugins.records.Component.label`; ``None``:
    a component not :func:`blames`, whose exceptions pass as they are). With ``package``
    (the top-level package of the component's code), only an exception raised in or under a
    function of that package is blamed on the component; others pass through (the block also
    runs the framework's and engines' code around the component, a strategy's wrapper around a
    model's ``forward``). ``raised_there``: only an exception raised by a line of the package
    itself (:func:`raised_in`), for components whose calls run the engines' and the model's code
    beneath them (a strategy's ``train_step``: a collective's error is not the strategy's bug).
    A :class:`BrokenAnswer` is the component's :func:`broken_answer` whatever package raised it."""
    try:
        yield
    except (DeepseekError, RankError):
        raise
    except BrokenAnswer as exc:  # deepseek's check of the component's answer: its bug, whoever raised it
        if label is None or exc.settled:
            raise
        raise broken_answer(label, str(exc)) from exc
    except Exception as exc:
        from deepseek.arguments import traceback_hint
        from deepseek.cli.root import out_of_memory
        from deepseek.plugins.records import describe_error
        from deepseek.training.launcher_env import peer_lost

        inside = raised_in if raised_there else raised_under
        if label is None or out_of_memory(exc) or peer_lost(exc) or (package is not None and not inside(exc, package)):
            raise
        raise PluginError(f"{label}: {call} raised {describe_error(exc)}; {PLUGIN_BUG} ({traceback_hint()})") from exc


def raised_under(exc: BaseException, package: str) -> bool:
    """Whether a frame of ``exc``'s traceback runs code of the top-level ``package``."""
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__") or ""
        if module == package or module.startswith(f"{package}."):
            return True
        tb = tb.tb_next
    return False


def raised_in(exc: BaseException, package: str) -> bool:
    """Whether ``exc`` was raised by code of the top-level ``package`` (its traceback's innermost
    frame)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = (tb.tb_frame.f_globals.get("__name__") or "") if tb is not None else ""
    return module == package or module.startswith(f"{package}.")


def code_package(component: object) -> str | None:
    """The top-level package of ``component``'s code (a class, a factory function, or an
    instance's class): where :func:`blamed_on` looks for its frames; ``None`` for deepseek's own
    code, whose exceptions are ours to report, not a plugin's."""
    module = getattr(component, "__module__", None) or type(component).__module__
    package = (module or "").partition(".")[0]
    return None if package in ("", "deepseek", "builtins", "torch") else package


def class_calls(component: Component, call: str) -> contextlib.AbstractContextManager[None]:
    """The block calling ``call`` on a resolved ``component``'s class (a class method such as
    ``check_config``, or its ``__init__``): what the plugin's own code raises becomes one line
    naming the component and its distribution (:func:`blamed_on` with its :func:`code_package`);
    deepseek's own components' and a script's errors pass as they are."""
    package = code_package(component.load())
    if package is None or not blames(component):
        return contextlib.nullcontext()
    return blamed_on(component.label, call, package=package)


def created(component: Component, /, *args: Any, **kwargs: Any) -> Any:
    """A resolved ``component``'s target called with the arguments: how ``deepseek.create_*`` and
    the graph optimizer instantiate a registered class or factory. What the plugin's own code
    raises there is one line naming it (:func:`class_calls` with ``__init__``); an exception that
    no frame of the plugin raised (a wrong argument of the caller) passes as it is."""
    target = component.load()
    with class_calls(component, "__init__"):
        return target(*args, **kwargs)


def instance_calls(component: object, label: str | None, call: str) -> contextlib.AbstractContextManager[None]:
    """The block calling ``call`` on a created component (``label`` naming it: a schedule's
    ``lr_at`` or ``state_dict``): what it raises in its own code becomes one line naming it
    (:func:`blamed_on` with its :func:`code_package`); for deepseek's own components (core's
    schedules, whose bugs are ours and keep their traceback) and a script's (``label`` ``None``),
    what it raises passes as it is (:func:`unblamed`; a script's broken answer: :func:`scripts_own`)."""
    package = code_package(component)
    if label is None or package is None:
        return _unblamed_calls(label, package)
    return blamed_on(label, call, package=package)


def model_calls(model: object, label: str | None, call: str = "forward") -> contextlib.AbstractContextManager[None]:
    """The block running ``model`` (a plugin's module, ``label`` naming it): :func:`instance_calls`
    with ``forward`` unless ``call`` says otherwise."""
    return instance_calls(model, label, call)


def blame_for(label: str | None, package: str | None) -> Callable[[str], contextlib.AbstractContextManager[None]]:
    """``call -> block`` that makes what the code of the top-level ``package`` raises in the
    block one line naming ``label`` and ``call`` (:func:`blamed_on`); where either is ``None``
    (deepseek's own component, a script's) one that passes what it raises as it is
    (:func:`unblamed`; a script's broken answer: :func:`scripts_own`). It holds no more
    than the two strings: a strategy may keep it (``StepSettings.model_calls``)."""
    if label is None or package is None:
        return lambda call: _unblamed_calls(label, package)
    return functools.partial(blamed_on, label, package=package)


def model_blame(component: Component, model: object) -> Callable[[str], contextlib.AbstractContextManager[None]]:
    """The blame of a built model's calls (:func:`blame_for`): its registration's label unless
    the component is not :func:`blames` (a script's), and the top-level package of the model's
    own class (:func:`code_package`: ``None`` for deepseek's models). Give it the model as built,
    not a strategy's wrapper around it (whose package is the strategy's): the engine in training,
    :func:`~deepseek.training.inference.load_placed` for ``deepseek eval`` / ``generate``. A
    script's model (not :func:`blames`) is :func:`scripts_own` whatever package its class is
    from: a ``torch.nn.Sequential`` or a deepseek model the script hands over is its own too."""
    if not blames(component):
        return lambda call: scripts_own()
    return blame_for(component.label, code_package(model))


def step_blamed_on(optimizer: Any, label: str) -> None:
    """Make what a plugin's optimizer class raises in its ``step`` one line naming ``label`` (the
    registered optimizer), wherever a strategy or engine calls it: the instance's ``step`` is
    wrapped with :func:`blamed_on` for the class's package (a torch or deepseek optimizer is left
    as it is). Without it the error was blamed on the model, whose step the optimizer's runs in,
    or was the framework's internal error."""
    package = code_package(optimizer)
    if package is None:
        return
    step = optimizer.step

    @functools.wraps(step)
    def blamed_step(*args: Any, **kwargs: Any) -> Any:
        with blamed_on(label, "step", package=package):
            return step(*args, **kwargs)

    optimizer.step = blamed_step
