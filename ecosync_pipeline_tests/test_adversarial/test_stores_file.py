"""The stores file loader: identifiers matched whole, so no store is synced twice."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ecosync_pipeline.config import parse_stores, validate_store_identifier
from ecosync_pipeline.errors import ConfigError


@pytest.mark.parametrize("identifier", ["S1\n", "S1\r\n", "S1 ", "\nS1", "S1\x00"])
def test_identifier_with_a_trailing_newline_or_space_is_refused(identifier: str) -> None:
    with pytest.raises(ConfigError, match="invalid: use 1 to 32 letters or digits"):
        validate_store_identifier(identifier)


def test_stores_file_with_identifier_s1_newline_is_refused_with_its_line(
    case_row: Callable[..., None],
) -> None:
    text = (
        "stores:\n"
        "  - identifier: S1\n    name: One\n    base_url: https://one.example\n"
        "    token_env: TOKEN_ONE\n"
        '  - identifier: "S1\\n"\n    name: One again\n    base_url: https://one.example\n'
        "    token_env: TOKEN_ONE\n"
    )
    with pytest.raises(ConfigError) as raised:
        parse_stores(text, "stores.yaml")
    message = str(raised.value)
    assert "stores.yaml, line 6" in message and "'S1\\n'" in message, message
    case_row(
        'identifier "S1\\n"',
        missing=None,
        blocked=None,
        leaked=None,
        peak_mb=None,
        message=f"ConfigError: {message}",
    )


def test_token_env_must_be_a_whole_variable_name() -> None:
    text = (
        "stores:\n  - identifier: S1\n    name: One\n    base_url: https://one.example\n"
        '    token_env: "TOKEN_ONE\\n"\n'
    )
    with pytest.raises(ConfigError, match="line 2: store S1: token_env must name"):
        parse_stores(text, "stores.yaml")
