"""The contract suites' ``--contract-data`` (docs/plugins.md section 9): a dataset name or key the
registered datasets do not have fails every test that makes datasets, in one line naming it and
the valid ones. A wrong key left its dataset unmade, which the model suite reads as a dataset the
model does not take: ``test_model_output_on_a_batch`` of the GPTs (which take only ``text``) was
skipped, while only the dataset's own tests failed. Run through pytester, in process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch  # noqa: F401  # imported before pytester's in-process runs, which drop the modules they import

import deepseek.plugins.host  # noqa: F401

pytest_plugins = ("pytester",)

REPO = Path(__file__).resolve().parents[3]


def _models_suite(pytester: pytest.Pytester, data: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess(
        "--rootdir", str(REPO), "--confcutdir", str(REPO), "-p", "no:cacheprovider", "-rfs",
        str(REPO / "tests" / "contract" / "test_models_contract.py"),
        "-k", "test_model_output_on_a_batch and deepseek-core:tiny]", "--contract-data", data)


@pytest.mark.parametrize(("data", "line", "valid"), [
    ('{"text": {"seq_lenn": 8}}', "--contract-data: text.seq_lenn: not a [data] key of dataset deepseek-core:text "
                                  "(did you mean 'seq_len'?); its keys: ", None),
    ('{"deepseek-core:txet": {"seq_len": 8}}', "--contract-data: 'deepseek-core:txet' names no registered dataset "
                                               "(did you mean 'deepseek-core:text'?); the datasets: ", "hf, text"),
])
def test_a_wrong_key_fails_the_models_check_in_one_line_not_skips_it(pytester: pytest.Pytester, data: str,
                                                                      line: str, valid: str | None) -> None:
    if valid is None:  # text's own [data] keys
        import dataclasses

        from deepseek.data.text import TextDataset

        valid = ", ".join(f.name for f in dataclasses.fields(TextDataset.Options))
    result = _models_suite(pytester, data)
    result.assert_outcomes(errors=1)  # fixture contract_data failed: the test is not run, nor skipped
    out = result.stdout.str()
    assert "SKIPPED" not in out and "During handling" not in out, out[-3000:]
    listed = [row for row in out.splitlines() if row.startswith(line)]
    assert len(listed) == 1, out[-3000:]  # the line, once
    assert listed[0].removeprefix(line) == valid, listed
