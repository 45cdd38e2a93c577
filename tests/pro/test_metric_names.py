"""Another rank's error, as ``metric_names.agree`` raises it on the ranks that did not raise it:
a framework refusal keeps its class's kind (``UsageError``, ``PluginError``, ``DeepseekError``) and line; any other exception (a bug in model code)
becomes core's ``RankError`` with its line and class name, which no component is blamed for."""

from __future__ import annotations

import pytest

from deepseek.errors import CheckpointError, DeepseekError, PluginError, RankError, UsageError
from deepseek.plugins.calls import blamed_on
from deepseek_pro.strategies.metric_names import described, rebuilt


def test_refusals_keep_their_kind_and_line() -> None:
    again = rebuilt(described(CheckpointError("step-2: truncated")))
    assert type(again) is UsageError and str(again) == "step-2: truncated"
    again = rebuilt(described(PluginError("acme: broke")))  # was a DeepseekError: the same line, another class
    assert type(again) is PluginError and str(again) == "acme: broke"
    again = rebuilt(described(DeepseekError("step 3: diverged")))
    assert type(again) is DeepseekError and str(again) == "step 3: diverged"


def test_a_bug_is_a_rank_error_naming_its_class() -> None:
    again = rebuilt(described(IndexError("index 9 is out of bounds")))
    assert isinstance(again, RankError) and not isinstance(again, DeepseekError)
    assert (str(again), again.type_name) == ("index 9 is out of bounds", "IndexError")


def test_a_rank_error_is_blamed_on_no_component() -> None:
    here = __name__.partition(".")[0]
    with pytest.raises(RankError), blamed_on("strategy 'pipeline'", "evaluate", package=here, raised_there=True):
        raise RankError("index 9 is out of bounds", "IndexError")
    with pytest.raises(PluginError), blamed_on("strategy 'pipeline'", "evaluate", package=here, raised_there=True):
        raise IndexError("index 9 is out of bounds")  # the same error raised here is this code's bug
