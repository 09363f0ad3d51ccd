"""The README's several-node deployment (issue 20) as written: deploy/nginx.conf is the
README's nginx block, complete, and survives rolling restarts; Redis listens on loopback
with AOF; every node gets the same JWT secret, a PID file and a log."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README[README.index("## Several nodes (Redis)"):README.index("## Performance")]


def block(lang: str) -> str:
    found = re.findall(rf"```{lang}\n(.*?)\n```", SECTION, re.S)
    assert found, lang
    return str(found[0])


def test_deploy_nginx_conf_is_the_readmes() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
    assert conf.split("\n", 1)[1].rstrip("\n") == block("nginx")


def test_the_nginx_config_is_complete_and_keeps_restarted_nodes() -> None:
    conf = block("nginx")
    assert re.search(r"^events \{", conf, re.M) and re.search(r"^http \{", conf, re.M)
    servers = re.findall(r"^\s*server 127\.0\.0\.1:\d+(.*);", conf, re.M)
    assert len(servers) == 3 and all("max_fails=0" in options for options in servers)
    for needed in ("proxy_set_header Host $host", "proxy_set_header Upgrade $http_upgrade", "proxy_http_version 1.1"):
        assert needed in conf
    read_timeout = int(re.search(r"proxy_read_timeout (\d+)s", conf).group(1))  # type: ignore[union-attr]
    assert read_timeout > 300  # the idle timeout (§7): nginx must not cut a quiet WebSocket first
    assert "pid " in conf and "error_log " in conf


def test_redis_and_the_nodes_are_started_as_a_restart_needs() -> None:
    sh = block("sh")
    redis = sh[sh.index("redis-server"):sh.index("--logfile")]
    assert "--bind 127.0.0.1" in redis and "--appendonly yes" in redis and "--dir " in redis
    assert "--pidfile" in redis
    node = sh[sh.index("start_node() {"):sh.index("}\n")]
    assert "CIDADAO_JWT_SECRET=" in node and "CIDADAO_STORE=redis" in node
    assert ".pid" in node and ".log" in node and "--node-name" in node


def test_the_nginx_config_parses_where_nginx_is_installed(tmp_path: Path) -> None:
    """``nginx -t`` on the config (paths moved under tmp_path); a machine without nginx
    checks what it can: the braces balance."""
    conf = block("nginx")
    assert conf.count("{") == conf.count("}")
    nginx = shutil.which("nginx")
    if nginx is None:
        return
    local = conf.replace("/run/cidadao/", f"{tmp_path}/").replace("/var/log/cidadao/", f"{tmp_path}/")
    path = tmp_path / "nginx.conf"
    path.write_text(local, encoding="utf-8")
    result = subprocess.run([nginx, "-t", "-c", str(path), "-p", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_local_cluster_script_is_valid_and_follows_the_readme() -> None:
    script = ROOT / "deploy" / "cluster.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text(encoding="utf-8")
    needs = ("--bind 127.0.0.1", "--appendonly yes", "deploy/nginx.conf", "CIDADAO_JWT_SECRET", ".pid", "kill -TERM")
    for needed in needs:
        assert needed in text
