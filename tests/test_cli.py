"""The command line: flags mirror Settings; `token` mints what the server accepts."""

from __future__ import annotations

import pytest

from cidadao_trio import cli, config
from cidadao_trio.auth import JwtConfig, TokenVerifier

SECRET = "cli-test-secret-with-32-bytes-or-more"


def test_every_setting_is_a_serve_flag() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["serve", "--port", "9001", "--idle-timeout", "12.5", "--auth", "required"])
    assert (args.port, args.idle_timeout, args.auth) == (9001, 12.5, "required")
    for field in config.fields():
        assert hasattr(args, field.name)


def test_flags_override_environment() -> None:
    environ = {"CIDADAO_PORT": "7000", "CIDADAO_MAX_CONNECTIONS": "5"}
    settings = config.from_environ(environ, port=7100, host=None)
    assert (settings.port, settings.max_connections, settings.host) == (7100, 5, "0.0.0.0")


def test_token_command_mints_a_verifiable_token(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["token", "--sub", "alice", "--role", "auditor", "--session", "s1", "--jwt-secret", SECRET])
    assert code == 0
    minted = capsys.readouterr().out.strip()
    principal = TokenVerifier(JwtConfig(secret=SECRET)).verify(minted)
    assert principal.sub == "alice" and principal.roles == {"auditor"} and principal.session_id == "s1"


def test_token_command_needs_a_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CIDADAO_JWT_SECRET", raising=False)
    assert cli.main(["token", "--sub", "alice"]) == 2
    assert "CIDADAO_JWT_SECRET" in capsys.readouterr().err


def test_serve_refuses_a_bad_config_file(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "bad.toml"
    path.write_text("velocidade = 3\n")
    assert cli.main(["serve", "--config", str(path)]) == 2
    assert "velocidade" in capsys.readouterr().err


def test_readme_documents_every_setting() -> None:
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [f.name for f in config.fields() if f"`{config.env_name(f.name)}`" not in readme]
    assert missing == []
