"""Fixtures of the contract suites: the plugin author's own ``[data]`` keys (``--contract-data``,
registered in ``tests/conftest.py``; :mod:`_contract_data`)."""

from __future__ import annotations

import pytest
from _contract_data import OwnData, read_contract_data


@pytest.fixture(scope="session")
def contract_data(pytestconfig: pytest.Config) -> OwnData:
    """Dataset name -> the ``[data]`` keys ``--contract-data`` (or ``DEEPSEEK_CONTRACT_DATA``)
    gives it; a value that is not such an object fails every test that makes datasets, in one line."""
    try:
        return read_contract_data(pytestconfig.getoption("contract_data", default=None))
    except ValueError as exc:
        pytest.fail(str(exc), pytrace=False)
