"""Tests for searcherd._secrets: references resolve, and a value never shows itself.

The secret values below are distinctive strings so that "not in" checks cannot pass by
accident; each leak check looks at the whole text a user or a log reader would see.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pytest
import structlog

from searcherd._logging import configure_logging
from searcherd._secrets import Secret, SecretError, SecretRef, parse_secret_ref, resolve_secret
from searcherd.config import ConfigError, load_config, parse_config

if TYPE_CHECKING:
    from pathlib import Path

_VALUE = "s3cr3t-Value-7f1c"


class _TTY(io.StringIO):
    """A StringIO that says it is a terminal, to get the console renderer."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("text", "kind", "target"),
    [
        ("env:ER_API_KEY", "env", "ER_API_KEY"),
        ("file:/run/keys/er", "file", "/run/keys/er"),
        ("file:relative/key:with:colons", "file", "relative/key:with:colons"),
        ("credential:signing-key", "credential", "signing-key"),
    ],
)
def test_references_parse(text: str, kind: str, target: str) -> None:
    """The three reference kinds parse into kind and target; str() gives the reference back."""
    ref = parse_secret_ref(text)
    assert ref == SecretRef(kind, target)
    assert str(ref) == text


@pytest.mark.parametrize(
    "text", [_VALUE, "", "env:", "vault:x", "ENV:X", "sk_live_abc", "http://u:p@h"]
)
def test_literal_values_are_refused_without_repeating_them(text: str) -> None:
    """Anything but a reference is refused, and the message does not quote what was given."""
    with pytest.raises(SecretError) as info:
        parse_secret_ref(text)
    assert str(info.value) == (
        'must be a reference "env:NAME", "file:PATH" or "credential:NAME", not a literal value'
    )


@pytest.mark.parametrize("name", ["a/b", "..", "."])
def test_credential_names_cannot_leave_the_credentials_folder(name: str) -> None:
    """`credential:` names a file in $CREDENTIALS_DIRECTORY, never a path out of it."""
    with pytest.raises(SecretError, match="cannot contain"):
        parse_secret_ref(f"credential:{name}")


def test_env_reference_resolves_stripped() -> None:
    """`env:NAME` reads the variable; surrounding whitespace is dropped."""
    secret = resolve_secret("env:K", {"K": f"  {_VALUE}\n"})
    assert secret.reveal() == _VALUE
    assert secret.ref == SecretRef("env", "K")


def test_file_reference_resolves(tmp_path: Path) -> None:
    """`file:PATH` reads the file, trailing newline stripped."""
    key = tmp_path / "key"
    key.write_text(f"{_VALUE}\n", encoding="utf-8")
    assert resolve_secret(f"file:{key}", {}).reveal() == _VALUE


def test_credential_reference_resolves_in_credentials_directory(tmp_path: Path) -> None:
    """`credential:NAME` reads $CREDENTIALS_DIRECTORY/NAME, as systemd's LoadCredential= sets."""
    (tmp_path / "api-key").write_text(_VALUE, encoding="utf-8")
    secret = resolve_secret("credential:api-key", {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert secret.reveal() == _VALUE
    assert SecretRef("credential", "api-key").path({"CREDENTIALS_DIRECTORY": str(tmp_path)}) == (
        tmp_path / "api-key"
    )


def test_references_resolve_from_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an explicit mapping, load_config reads os.environ and CREDENTIALS_DIRECTORY."""
    (tmp_path / "fp-key").write_text(_VALUE + "-fp", encoding="utf-8")
    monkeypatch.setenv("SEARCHERD_TEST_ER_KEY", _VALUE)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    path = tmp_path / "searcher.toml"
    path.write_text(
        '[express_relay]\napi_key = "env:SEARCHERD_TEST_ER_KEY"\n'
        '[fusion_plus]\napi_key = "credential:fp-key"\n',
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.express_relay.api_key is not None
    assert config.express_relay.api_key.reveal() == _VALUE
    assert config.fusion_plus.api_key is not None
    assert config.fusion_plus.api_key.reveal() == _VALUE + "-fp"


def test_missing_env_variable_is_a_clear_error() -> None:
    """An unset variable names the reference and the variable."""
    with pytest.raises(SecretError, match=r"^env:NOPE: environment variable NOPE is not set$"):
        resolve_secret("env:NOPE", {})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """A missing file names the reference and says it does not exist."""
    with pytest.raises(SecretError, match="does not exist"):
        resolve_secret(f"file:{tmp_path / 'nope'}", {})


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    """A folder or a non-UTF-8 file gives a SecretError, not an OSError or UnicodeDecodeError."""
    with pytest.raises(SecretError, match="cannot read"):
        resolve_secret(f"file:{tmp_path}", {})
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(SecretError, match="not UTF-8"):
        resolve_secret(f"file:{binary}", {})


def test_credential_without_credentials_directory_is_a_clear_error() -> None:
    """`credential:` outside systemd says $CREDENTIALS_DIRECTORY is not set."""
    with pytest.raises(SecretError, match=r"CREDENTIALS_DIRECTORY is not set.*LoadCredential"):
        resolve_secret("credential:x", {})


def test_missing_credential_is_a_clear_error(tmp_path: Path) -> None:
    """A credential name with no file in the folder says so."""
    with pytest.raises(SecretError, match=r"^credential:x: file .* does not exist$"):
        resolve_secret("credential:x", {"CREDENTIALS_DIRECTORY": str(tmp_path)})


def test_empty_secret_is_an_error() -> None:
    """A secret that is only whitespace is refused."""
    with pytest.raises(SecretError, match="the secret is empty"):
        resolve_secret("env:K", {"K": " \n"})


def test_secret_repr_and_str_show_only_the_reference() -> None:
    """repr, str and format of a Secret give the reference, never the value."""
    secret = Secret(SecretRef("env", "K"), value=_VALUE)
    assert repr(secret) == "<secret env:K>"
    assert str(secret) == "<secret env:K>"
    assert f"{secret} {secret!r} {[secret]} { ({'k': secret}) }".count(_VALUE) == 0


def test_config_errors_name_the_reference_in_config_paths() -> None:
    """Unresolvable secrets are config problems under the key's path, with every other problem."""
    with pytest.raises(ConfigError) as info:
        parse_config(
            '[express_relay]\napi_key = "env:NOPE"\n[fusion_plus]\napi_key = "x"\n'
            "[daemon]\nshutdown_grace = 0\n",
            environ={},
        )
    assert sorted(info.value.problems) == [
        "daemon.shutdown_grace: must be > 0, got 0",
        "express_relay.api_key: env:NOPE: environment variable NOPE is not set",
        'fusion_plus.api_key: must be a reference "env:NAME", "file:PATH" or "credential:NAME",'
        " not a literal value",
    ]


def test_literal_secret_in_config_is_not_repeated_in_the_error() -> None:
    """A literal api_key is refused and the ConfigError text never contains it."""
    with pytest.raises(ConfigError) as info:
        parse_config(f'[express_relay]\napi_key = "{_VALUE}"\n', environ={})
    assert _VALUE not in str(info.value)
    assert _VALUE not in info.value.render()


def test_resolved_secret_is_absent_from_config_repr_and_errors() -> None:
    """A resolved secret is in neither repr(config) nor the ConfigError of a failing file."""
    environ = {"K": _VALUE}
    config = parse_config('[express_relay]\napi_key = "env:K"\n', environ=environ)
    assert config.express_relay.api_key is not None
    assert config.express_relay.api_key.reveal() == _VALUE
    assert _VALUE not in repr(config)
    assert _VALUE not in str(config)
    assert "<secret env:K>" in repr(config)
    with pytest.raises(ConfigError) as info:
        parse_config('[express_relay]\napi_key = "env:K"\nbogus = 1\n', environ=environ)
    assert _VALUE not in str(info.value)
    assert _VALUE not in info.value.render()


def _log_everything(secret: Secret) -> None:
    """Log the secret every way code might: as a value, inside a config, in an exception."""
    log = structlog.get_logger("test_secrets")
    log.info("with_secret", api_key=secret, nested={"keys": [secret]})

    def fail(revealed: str) -> None:
        # `revealed` is a local holding the value: a traceback with locals would print it.
        raise RuntimeError(f"request failed with {secret!r} (len {len(revealed)})")

    try:
        fail(secret.reveal())
    except RuntimeError:
        log.exception("request_failed")


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["json", "console"])
def test_secret_never_appears_in_log_output(fmt: str) -> None:
    """Log lines, including a logged traceback, show `<secret env:K>` and never the value."""
    stream = _TTY() if fmt == "console" else io.StringIO()
    configure_logging("debug", fmt, stream, cache=False)
    config = parse_config('[express_relay]\napi_key = "env:K"\n', environ={"K": _VALUE})
    assert config.express_relay.api_key is not None
    _log_everything(config.express_relay.api_key)
    structlog.get_logger("test_secrets").info("config_loaded", config=config)
    output = stream.getvalue()
    assert "request_failed" in output
    assert "RuntimeError" in output
    assert "<secret env:K>" in output
    assert _VALUE not in output
