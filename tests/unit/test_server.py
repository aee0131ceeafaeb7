from __future__ import annotations

import logging

import pytest

from bridge.server import _RedactQueryToken


@pytest.mark.parametrize(
    ("target", "redacted"),
    [
        ("/sse/t?access_token=abc.def.ghi", "/sse/t?access_token=[redacted]"),
        ("/sse/t?lastEventId=1.2&access_token=abc&since=x", "/sse/t?lastEventId=1.2&access_token=[redacted]&since=x"),
        ("/sse/t?access%5Ftoken=abc", "/sse/t?access%5Ftoken=[redacted]"),
        ("/sse/t?access_token=a&access_token=b", "/sse/t?access_token=[redacted]&access_token=[redacted]"),
        ("/sse/t?my_access_token=abc", "/sse/t?my_access_token=abc"),
        ("/sse/t", "/sse/t"),
    ],
)
def test_the_token_parameter_is_redacted_from_access_log_lines(target: str, redacted: str) -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", target, "1.1", 200), None)  # fmt: skip
    assert _RedactQueryToken("access_token").filter(record)
    assert record.getMessage() == f'127.0.0.1:5 - "GET {redacted} HTTP/1.1" 200'
