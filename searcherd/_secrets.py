"""Secret references: `env:NAME`, `file:PATH` and `credential:NAME`.

Secrets never appear literally in `searcher.toml`; the file names where the secret lives and the
daemon reads it at load time. A resolved secret is a `Secret`, whose `repr` and `str` show only
the reference, so a secret that ends up in a log line, an error or a traceback shows up as
`<secret env:ER_API_KEY>` and nothing more.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["Secret", "SecretError", "SecretRef", "parse_secret_ref", "resolve_secret"]

_KINDS: Final = ("env", "file", "credential")


class SecretError(Exception):
    """A secret reference is malformed or names something that cannot be read.

    The message names the reference (never the value) and says what is wrong.
    """


@attrs.frozen
class SecretRef:
    """A parsed secret reference: where a secret lives, not the secret itself."""

    kind: str
    target: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"

    def path(self, environ: Mapping[str, str] | None = None) -> Path | None:
        """The file holding the secret, for `file:` and `credential:` references.

        `credential:NAME` is `$CREDENTIALS_DIRECTORY/NAME`, where systemd's `LoadCredential=`
        puts it. Returns None for `env:` references.
        """
        env = os.environ if environ is None else environ
        if self.kind == "file":
            return Path(self.target).expanduser()
        if self.kind == "credential":
            directory = env.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise SecretError(
                    f"{self}: $CREDENTIALS_DIRECTORY is not set "
                    "(credential: references need systemd's LoadCredential=)"
                )
            return Path(directory) / self.target
        return None


def parse_secret_ref(text: str) -> SecretRef:
    """Parse `env:NAME`, `file:PATH` or `credential:NAME`.

    A string that is not a reference is refused: a literal secret in the config file would end up
    in backups, diffs and bug reports.
    """
    kind, sep, target = text.partition(":")
    if not sep or kind not in _KINDS or not target:
        raise SecretError(
            'must be a reference "env:NAME", "file:PATH" or "credential:NAME", not a literal value'
        )
    if kind == "credential" and ("/" in target or target in {".", ".."}):
        raise SecretError(f"{kind}:{target}: a credential name cannot contain '/'")
    return SecretRef(kind, target)


@attrs.frozen(repr=False)
class Secret:
    """A resolved secret value that never shows itself.

    Call `reveal()` at the one place the value is used (an HTTP header, a signing key).
    """

    ref: SecretRef
    _value: str = attrs.field(alias="value")

    def reveal(self) -> str:
        """Return the secret value, for the one place that must use it."""
        return self._value

    def __repr__(self) -> str:
        return f"<secret {self.ref}>"

    __str__ = __repr__


def resolve_secret(text: str, environ: Mapping[str, str] | None = None) -> Secret:
    """Resolve a reference to its value, stripped of surrounding whitespace.

    Raises `SecretError` naming the reference and the reason (variable unset, file missing or
    unreadable, empty value).
    """
    env = os.environ if environ is None else environ
    ref = parse_secret_ref(text)
    if ref.kind == "env":
        value = env.get(ref.target)
        if value is None:
            raise SecretError(f"{ref}: environment variable {ref.target} is not set")
    else:
        path = ref.path(env)
        assert path is not None  # file: and credential: always name a file
        try:
            value = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SecretError(f"{ref}: file {path} does not exist") from None
        except OSError as exc:
            raise SecretError(f"{ref}: cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise SecretError(f"{ref}: {path} is not UTF-8 text") from None
    value = value.strip()
    if not value:
        raise SecretError(f"{ref}: the secret is empty")
    return Secret(ref, value)
