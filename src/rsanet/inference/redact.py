"""Secrets out of printed URLs: the one redaction every URL goes through before it is
printed, logged or written (text and JSON output, event logs, outage reasons, warnings).

* user-info with any characters, ``/``, ``@``, ``?`` and ``#`` in the password included:
  ``rtsp://viewer:pa/ss@cam/s`` -> ``rtsp://viewer:***@cam/s``;
* a token given as the user name: ``https://ghp_abc@host/hook`` -> ``https://***@host/hook``;
* the values of query (and fragment) parameters that name a credential (``password``,
  ``token``, ``key``, ``secret``, ``auth``, ``api_key``, ``access_token``, ``signature``,
  and any ``*_token`` / ``*_key`` / ``*_secret`` / ``*_password``):
  ``?user=a&token=xyz`` -> ``?user=a&token=***``.

When it is unclear whether an ``@`` ends user-info (``http://host:8080/path@v1``) the text
is treated as user-info: a URL may be over-redacted, a secret is never printed.

:func:`split_credentials` gives the pieces a client needs to send the credentials as a
header instead of in the URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

MASK = "***"

#: a URL scheme and its ``//`` (the authority follows)
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
#: a URL inside free text (an error message, an outage reason)
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+")
#: query parameter names (lower case, ``-`` read as ``_``) whose values are secrets
SECRET_PARAMETERS = frozenset(
    {
        "password", "passwd", "pwd", "pass", "passphrase", "token", "key", "secret", "auth",
        "authorization", "api_key", "apikey", "access_token", "refresh_token", "id_token",
        "client_secret", "private_token", "signature", "sig", "credential", "credentials",
        "session", "sessionid", "session_id", "jwt", "bearer",
    }
)  # fmt: skip
_SECRET_SUFFIX = re.compile(r"_(token|key|secret|password|passwd|pwd|auth|signature|credential)s?$")


def is_secret_parameter(name: str) -> bool:
    """Whether a query parameter called ``name`` carries a credential."""
    key = unquote(name).strip().lower().replace("-", "_")
    return key in SECRET_PARAMETERS or bool(_SECRET_SUFFIX.search(key))


def _userinfo_end(rest: str) -> int:
    """Index of the ``@`` that ends the user-info in ``rest`` (the URL after ``scheme://``),
    or -1 when there is no user-info."""
    ats = [i for i, c in enumerate(rest) if c == "@"]
    if not ats:
        return -1
    authority_end = next((i for i, c in enumerate(rest) if c in "/?#"), len(rest))
    query_start = next((i for i, c in enumerate(rest) if c in "?#"), len(rest))
    before_query = [i for i in ats if i < query_start]
    if any(i < authority_end for i in ats):
        return max(before_query)  # user-info, perhaps with '/' or '@' in the password
    authority = rest[:authority_end]
    if ":" in authority and not authority.startswith("["):
        # "user:pa/ss@host": the password holds a '/' (or '?', '#'), which ends the
        # authority early; an '@' further on closes the user-info
        return max(before_query) if before_query else max(ats)
    return -1


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``(url without user-info, user, password)``; user and password percent-decoded,
    None where absent (``password`` is None for ``https://TOKEN@host``)."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return url, None, None
    rest = url[scheme.end() :]
    at = _userinfo_end(rest)
    if at < 0:
        return url, None, None
    userinfo = rest[:at]
    user, colon, password = userinfo.partition(":")
    return (
        url[: scheme.end()] + rest[at + 1 :],
        unquote(user),
        unquote(password) if colon else None,
    )


def _redact_parameters(part: str) -> str:
    """``a=1&token=x`` -> ``a=1&token=***`` (``&`` and ``;`` separated)."""
    pieces = re.split(r"([&;])", part)
    for number, piece in enumerate(pieces):
        name, equals, value = piece.partition("=")
        if equals and value and is_secret_parameter(name):
            pieces[number] = f"{name}={MASK}"
    return "".join(pieces)


def redact_url(url: str) -> str:
    """``url`` with its credentials replaced by ``***`` (see the module docstring); text
    that is not a URL comes back unchanged."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return url
    rest = url[scheme.end() :]
    at = _userinfo_end(rest)
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        masked = f"{user}:{MASK}" if colon else MASK  # a lone user name is a token
        rest = f"{masked}@{rest[at + 1 :]}"
    head, hash_, fragment = rest.partition("#")
    path, question, query = head.partition("?")
    if question:
        path += question + _redact_parameters(query)
    if hash_:
        path += hash_ + _redact_parameters(fragment)
    return url[: scheme.end()] + path


def redact_text(text: str) -> str:
    """Every URL inside ``text`` (an error message, a reason) redacted."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)


def redact_record(record: Any) -> Any:
    """A JSON-like record (dicts, lists, strings, numbers) with every URL in its strings
    redacted; what is not a string is returned as it is."""
    if isinstance(record, str):
        return redact_text(record)
    if isinstance(record, Mapping):
        return {key: redact_record(value) for key, value in record.items()}
    if isinstance(record, list | tuple):
        return [redact_record(value) for value in record]
    return record


def one_line(error: BaseException | str) -> str:
    """An error (or a reason) as one redacted line: whitespace runs become one space, an
    empty message the error's type name."""
    text = " ".join(str(error).split())
    return redact_text(text or type(error).__name__)
