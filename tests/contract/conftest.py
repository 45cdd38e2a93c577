"""Fixtures of the contract suites: the plugin author's own ``[data]`` keys (``--contract-data``,
registered in ``tests/conftest.py``; :mod:`_contract_data`)."""

from __future__ import annotations

import pytest
from _contract_data import OwnData, read_contract_data


@pytest.fixture(scope="session")
def contract_data(pytestconfig: pytest.Config) -> OwnData:
    """Dataset name -> the ``[data]`` keys ``--contract-data`` (or ``DEEPSEEK_CONTRACT_DATA``)
    gives it; a value that is not such an object, or names a dataset or key the registered datasets
    do not have, fails every test that makes datasets, in one line."""
    from deepseek.plugins.host import get_host

    try:
        return read_contract_data(pytestconfig.getoption("contract_data", default=None), host=get_host())
    except ValueError as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)  # outside the except: no "During handling ..." repeat of the line
