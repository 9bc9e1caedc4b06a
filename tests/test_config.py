"""Configuration: validation messages name the key, paths resolve, secrets stay out."""

from __future__ import annotations

from pathlib import Path

import pytest

from faxgw.config import load_config
from faxgw.domain.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def _write(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "etc"
    folder.mkdir(exist_ok=True)
    path = folder / "faxgw.toml"
    path.write_text(text)
    return path


def test_shipped_example_loads() -> None:
    config = load_config(REPO / "config" / "faxgw.toml")
    assert config.spool.dir == (REPO / "spool").resolve()
    assert config.smtp.security == "starttls" and config.smtp.verify_certificate


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[smtp]\nprot = 587\n", r"\[smtp\] prot: unknown key"),
        ('[smtp]\nport = "five"\n', r"\[smtp\] port: Input should be a valid integer"),
        ("[smtp]\nport = 70000\n", r"\[smtp\] port: Input should be less than or equal"),
        ('[smtp]\nsecurity = "ssl"\n', r"\[smtp\] security: Input should be 'starttls'"),
        ('[service]\naddress = "fax@example.net"\n', r"\[service\] address: must contain"),
        ('[service]\naddress = "{e164}@{domain}"\n',
         r"\[service\] address: unknown placeholder \{domain\}; use \{e164\}"),
        ('[service]\naddress = "{e164}@fax{.net"\n',
         r"\[service\] address: is not a valid template"),
        ('[service]\nsubject = "Fax to {to}"\n',
         r"\[service\] subject: unknown placeholder \{to\}; use \{number\}"),
        ('[service]\nregion = "XX"\n', r"\[service\] region: 'XX' is not a two-letter"),
        ('[retry]\nmax_age = "soon"\n', r"\[retry\] max_age: 'soon' is not a duration"),
        ('[auth]\nauthority = "http://idp"\n', r"\[auth\] authority: must start with https"),
        ("[fax]\nx = 1\n", r"\[fax\]: unknown section"),
        ("[smtp\n", r"not valid TOML"),
    ],
)
def test_bad_config_names_key_and_problem(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)  # one message, one line


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    path = _write(tmp_path, '[spool]\ndir = "../spool"\n[auth]\npassword_file = "pw"\n')
    config = load_config(path)
    assert config.spool.dir == (tmp_path / "spool").resolve()
    assert config.auth.password_file == (tmp_path / "etc" / "pw").resolve()


def test_config_from_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, '[service]\nregion = "us"\n')
    monkeypatch.setenv("FAXGW_CONFIG", str(path))
    assert load_config().service.region == "US"


def test_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "nope.toml")


def test_password_from_file_or_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "pw").write_text("from-file\n")
    config = load_config(_write(tmp_path, '[auth]\nmethod = "password"\npassword_file = "pw"\n'))
    monkeypatch.delenv("FAXGW_SMTP_PASSWORD", raising=False)
    assert config.smtp_password() == "from-file"
    monkeypatch.setenv("FAXGW_SMTP_PASSWORD", "from-env")
    assert config.smtp_password() == "from-env"
    assert "from-file" not in repr(config) and "from-env" not in repr(config)


def test_password_missing_names_both_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAXGW_SMTP_PASSWORD", raising=False)
    config = load_config(_write(tmp_path, '[auth]\nmethod = "password"\n'))
    with pytest.raises(ConfigError, match="FAXGW_SMTP_PASSWORD"):
        config.smtp_password()


def test_provider_preset_fills_smtp_and_explicit_keys_win(tmp_path: Path) -> None:
    config = load_config(
        _write(tmp_path, '[auth]\nmethod = "oauth2"\nprovider = "outlook"\n[smtp]\nport = 2587\n')
    )
    assert (config.smtp.host, config.smtp.port) == ("smtp-mail.outlook.com", 2587)
