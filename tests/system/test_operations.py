"""What operators configure: TLS, permessage-deflate, TOML config, JSON logs."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import logging
import ssl
from pathlib import Path

import pytest
import trio
import trio_websocket
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cidadao_trio import config, logs
from cidadao_trio.config import Settings
from cidadao_trio.server.server import Server

from ..harness import tcp_server
from ..process import ServerProcess


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_tls_serves_wss_and_https(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    settings = Settings(host="127.0.0.1", port=0, store="memory", tls_cert=str(cert), tls_key=str(key))
    client_context = ssl.create_default_context(cafile=str(cert))
    server = Server(settings, dataset=())
    async with server.running(), trio.open_nursery() as nursery:
        listeners = await nursery.start(server.serve_tcp)
        port = listeners[0].transport_listener.socket.getsockname()[1]
        async with trio_websocket.open_websocket_url(
            f"wss://127.0.0.1:{port}/api/v1/ws/chat/s1", ssl_context=client_context
        ) as ws:
            hello = json.loads(await ws.get_message())
            assert hello["type"] == "connection"
        stream = await trio.open_ssl_over_tcp_stream(
            "127.0.0.1", port, ssl_context=client_context, https_compatible=True
        )
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some():
                response += chunk
        assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"ok\n")
        plain = await trio.open_tcp_stream("127.0.0.1", port)  # no TLS: refused, server carries on
        await plain.send_all(b"GET /healthz HTTP/1.1\r\n\r\n")
        with trio.fail_after(10):
            assert b"200" not in await plain.receive_some()
        nursery.cancel_scope.cancel()


def test_permessage_deflate_negotiated_and_bounded(shared_server: ServerProcess) -> None:
    async def scenario(port: int) -> tuple[str, str, int | None, str]:
        url = f"ws://127.0.0.1:{port}/api/v1/ws/chat/zip"
        async with websockets.connect(url, compression="deflate") as ws:
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            await ws.recv()
            long_text = "Transparência nos gastos públicos. " * 80  # ~2.8 KB: compressed both ways
            await ws.send(json.dumps({"type": "chat", "data": {"message": long_text}}))
            echoed = json.loads(await asyncio.wait_for(ws.recv(), 10))["data"]["content"]
            assert echoed == long_text
            await ws.send("x" * 2_000_000)  # deflates to a few KB; inflates past 64 KiB
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            code = ws.close_code
        async with websockets.connect(url, compression="deflate") as ws:
            after = json.loads(await asyncio.wait_for(ws.recv(), 10))["type"]
        return extensions, echoed[:13], code, after

    extensions, start, code, after = asyncio.run(scenario(shared_server.port))
    assert "permessage-deflate" in extensions
    assert start == "Transparência"
    assert code == 1009
    assert after == "connection"


async def test_deflate_can_be_turned_off() -> None:
    """In process (the setting read as ``serve`` reads it); the client offers deflate from a
    thread, since ``websockets`` runs on asyncio."""

    async def scenario(port: int) -> str:
        async with websockets.connect(f"ws://127.0.0.1:{port}/api/v1/ws/chat/z", compression="deflate") as ws:
            return ws.response.headers.get("Sec-WebSocket-Extensions", "")

    settings = config.from_environ({"CIDADAO_DEFLATE": "false"})
    assert settings.deflate is False
    async with tcp_server(deflate=settings.deflate) as (_, port):
        extensions = await trio.to_thread.run_sync(asyncio.run, scenario(port))
    assert extensions == ""


def test_toml_config_sits_between_defaults_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "cidadao.toml"
    path.write_text('[server]\nport = 9100\nmax-connections = 50\nallowed_origins = "https://cidadao.ai"\n')
    settings = config.from_environ({"CIDADAO_MAX_CONNECTIONS": "70"}, config_file=str(path))
    assert (settings.port, settings.max_connections, settings.origins) == (9100, 70, {"https://cidadao.ai"})
    assert config.from_environ({}, config_file=str(path), port=9200).port == 9200
    path.write_text("porta = 1\n")
    with pytest.raises(ValueError, match="porta"):
        config.from_environ({}, config_file=str(path))


def test_json_logs_are_one_object_per_line_with_context(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "json")
    try:
        logging.getLogger("cidadao_trio.test").info(
            "closing connection: %d %s", 1000, "idle timeout", extra={"conn": 7, "session": "s1", "code": 1000}
        )
    finally:
        logging.getLogger().handlers.clear()
    line = capsys.readouterr().err.strip()
    event = json.loads(line)
    assert event["message"] == "closing connection: 1000 idle timeout"
    assert (event["level"], event["conn"], event["session"], event["code"]) == ("info", 7, "s1", 1000)
    assert event["ts"].endswith("Z")


def test_shared_frames_reach_clients_with_and_without_deflate(shared_server: ServerProcess) -> None:
    """Small messages travel as one shared frame (written straight to the socket)."""

    async def turn(port: int, compression: str | None) -> list[dict]:
        async with websockets.connect(f"ws://127.0.0.1:{port}/api/v1/ws/chat/f", compression=compression) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "chat", "data": {"message": "Olá " * 300}}))
            seen = []
            while not seen or seen[-1]["type"] != "chat_complete":
                seen.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            return seen

    for compression in (None, "deflate"):
        seen = asyncio.run(turn(shared_server.port, compression))
        assert seen[0]["data"]["content"] == "Olá " * 300  # 1.2 KB: deflated when negotiated
        assert seen[-1]["data"]["status"] == "completed"
