"""The web console at ``GET /``: served correctly, and working in a real headless Chromium.

The browser is driven through the Chrome DevTools Protocol (CDP): Chromium is started with
``--remote-debugging-port=0``, writes the port it picked to ``DevToolsActivePort`` in its
profile directory, and we talk CDP over a WebSocket with ``websockets.sync``. No chromedriver,
no version matching, no network but 127.0.0.1 (every other host name fails to resolve).

Chromium must be at ``/usr/bin/chromium``: the tests fail (not skip) without it; ``.ci/run``
installs it. The console is served by the suite's shared ``cidadao-trio serve`` process; the
rate-limit and auth-required pages by in-process servers on 127.0.0.1 (their setting is the
subject, not the process: a start-up costs ~0.8 s of CPU).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from ..process import ServerProcess, serve
from ..server.streams import threaded_server

CHROMIUM = "/usr/bin/chromium"
DEADLINE = 20.0  # seconds; a safety net for every wait in the browser
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio", "--no-default-browser-check",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
]
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//|@import""", re.I)


class BrowserError(AssertionError):
    pass


class Page:
    """One tab, driven over a flattened CDP session of the browser's WebSocket."""

    def __init__(self, ws: ClientConnection, session_id: str) -> None:
        self.ws = ws
        self.session_id = session_id
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        self.ws.send(json.dumps({"id": ident, "sessionId": self.session_id, "method": method, "params": params}))
        deadline = time.monotonic() + DEADLINE
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"no CDP answer to {method} within {DEADLINE} s")
            message = json.loads(self.ws.recv(timeout=remaining))
            if message.get("id") != ident or message.get("sessionId") != self.session_id:
                continue  # an event, or another session's answer
            if "error" in message:
                raise BrowserError(f"{method}: {message['error']}")
            return message.get("result", {})

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"JS exception in {expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = DEADLINE) -> Any:
        """Wait, inside the page, until ``expression`` is truthy; its value, or a failure
        naming ``what``. The page re-checks on every DOM change (a MutationObserver), so
        the test neither sleeps nor polls."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log = self.js("document.getElementById('log')?.innerText ?? ''")
                status = self.js("document.getElementById('status')?.textContent ?? ''")
                raise BrowserError(f"timed out after {timeout} s waiting for {what}; status={status!r}; log={log!r}")
            try:
                value = self.js(_until(expression, min(remaining, DEADLINE / 2)))
            except BrowserError as lost:  # a navigation replaced the page mid-wait: wait in the new one
                if "context" not in str(lost).lower():
                    raise
                continue
            if value:
                return value

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && !!window.cidadao", f"page {url}")

    def type_and_enter(self, text: str) -> None:
        """Type into the message box like a user (real input events) and press Enter."""
        self.js("document.getElementById('message').focus()")
        self.call("Input.insertText", text=text)
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                      windowsVirtualKeyCode=13, nativeVirtualKeyCode=13,
                      **({"text": "\r"} if kind == "keyDown" else {}))

    def wait_connected(self) -> None:
        self.wait_for("document.getElementById('status').dataset.state === 'connected'"
                      " && !document.getElementById('send').disabled", "the console to connect")

    def screenshot(self, path: str) -> None:
        import base64

        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as out:
            out.write(base64.b64decode(data))


def _devtools_url(process: subprocess.Popen[bytes]) -> str:
    """Chromium announces its DevTools endpoint on stderr; read it (a thread keeps draining
    stderr afterwards, so the browser never blocks on a full pipe)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            lines.put(raw.decode(errors="replace"))
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.001))
        except queue.Empty:
            raise BrowserError(f"chromium announced no DevTools endpoint within {DEADLINE} s") from None
        if line is None:
            raise BrowserError(f"chromium exited with {process.wait()}:\n{''.join(seen)}")
        seen.append(line)
        match = re.search(r"DevTools listening on (ws://\S+)", line)
        if match:
            return match.group(1)


def _until(expression: str, seconds: float) -> str:
    """A promise resolving to ``expression`` once truthy (checked on DOM changes and a
    slow timer, for state that is not in the DOM), or to null after ``seconds``."""
    return f"""new Promise(resolve => {{
      const check = () => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }};
      const done = value => {{ observer.disconnect(); clearInterval(timer); clearTimeout(limit); resolve(value); }};
      const observer = new MutationObserver(() => {{ const v = check(); if (v) done(v); }});
      observer.observe(document, {{subtree: true, childList: true, attributes: true, characterData: true}});
      const timer = setInterval(() => {{ const v = check(); if (v) done(v); }}, 100);
      const limit = setTimeout(() => done(null), {int(seconds * 1000)});
      const first = check(); if (first) done(first);
    }})"""


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Page]:
    """A headless Chromium with one blank tab; the browser is always killed on the way out."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Chromium is required at {CHROMIUM} for the console's browser tests; install it with "
                    "`apt-get update && apt-get install -y chromium chromium-driver` (.ci/run does)", pytrace=False)
    profile = tempfile.mkdtemp(prefix="cidadao-chromium-")
    process = subprocess.Popen([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                f"--window-size={width},{height}", "about:blank"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    stack = contextlib.ExitStack()
    ws: ClientConnection | None = None
    try:
        ws = stack.enter_context(connect(_devtools_url(process), max_size=None, open_timeout=DEADLINE))
        target = _browser_call(ws, "Target.createTarget", url="about:blank")["targetId"]
        session = _browser_call(ws, "Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        page = Page(ws, session)
        page.call("Page.enable")
        page.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        yield page
    finally:
        if ws is not None:  # ask politely first, so that the browser reaps its own helper processes
            with contextlib.suppress(Exception):
                ws.send(json.dumps({"id": next(_BROWSER_IDS), "method": "Browser.close"}))
                process.wait(timeout=5)
        stack.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the browser and every helper process it started
        process.wait()
        shutil.rmtree(profile, ignore_errors=True)


_BROWSER_IDS = itertools.count(1_000_000)  # browser-level commands (no sessionId)


def _browser_call(ws: ClientConnection, method: str, **params: Any) -> dict[str, Any]:
    ident = next(_BROWSER_IDS)
    ws.send(json.dumps({"id": ident, "method": method, "params": params}))
    deadline = time.monotonic() + DEADLINE
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrowserError(f"no CDP answer to {method}")
        message = json.loads(ws.recv(timeout=remaining))
        if message.get("id") == ident and "sessionId" not in message:
            if "error" in message:
                raise BrowserError(f"{method}: {message['error']}")
            return message["result"]


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """One process (in-memory store) for the module; every console opens a fresh session.
    0.1 s between investigation events (default 0.25): ~2.5 s in all, time enough to watch it run."""
    with serve(investigation_step_delay=0.1) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Page]:
    with chromium() as page:
        yield page


@pytest.fixture
def console(server: ServerProcess, browser: Page) -> Page:
    """The console loaded on a fresh session, connected."""
    browser.goto(f"http://127.0.0.1:{server.port}/?session=test-{uuid.uuid4().hex[:12]}")
    browser.wait_connected()
    return browser


def http_get(server: ServerProcess, path: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=10) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read().decode()


ASSISTANT_DONE = """[...document.querySelectorAll('#log .msg.assistant:not(.streaming)')]
    .map(n => ({who: n.querySelector('.who').textContent, text: n.querySelector('.text').textContent}))"""


# --- the page itself ---------------------------------------------------------------------------


def test_console_is_served_as_self_contained_html(server: ServerProcess) -> None:
    status, content_type, body = http_get(server, "/")
    assert status == 200
    assert content_type.startswith("text/html")
    assert 'from "/sdk/cidadao-realtime.js"' in body, "the console is a client of the SDK"
    assert EXTERNAL.search(body) is None, "the console must not load external scripts, styles or fonts"
    assert "innerHTML" not in body and "insertAdjacentHTML" not in body and "document.write" not in body


# --- in a real browser -----------------------------------------------------------------------------


def test_browser_chat_streams_drummonds_reply(console: Page) -> None:
    console.type_and_enter("Olá")
    replies = console.wait_for(f"(() => {{ const r = {ASSISTANT_DONE}; return r.length ? r : null; }})()",
                               "Drummond's reply")
    assert len(replies) == 1
    assert "Drummond" in replies[0]["who"]
    assert "Drummond" in replies[0]["text"] or "Cidadão" in replies[0]["text"]
    users = console.js("[...document.querySelectorAll('#log .msg.user')].map(n => n.textContent)")
    assert users == ["Olá"]
    assert console.js("document.getElementById('message').value") == ""
    console.wait_for("document.getElementById('typing').textContent === ''", "the typing indicator to clear")
    chips = console.js("[...document.querySelectorAll('#suggestions button.chip')].map(b => b.textContent)")
    assert chips, "suggested actions should be offered as chips"


def test_browser_investigation_progress_anomalies_and_report(console: Page, server: ServerProcess) -> None:
    console.type_and_enter("Investigar contratos do Ministério da Saúde")
    investigation = console.wait_for("document.querySelector('#investigations article.inv')?.dataset.id", "the card")
    assert console.js("!document.querySelector('article.inv button.stop').hidden"), "offered while it runs"
    assert "continua" in console.js("document.querySelector('article.inv button.stop').title")
    # a second person watches the investigation: presence (§9) shows it on the card
    with connect(server.ws_url(f"/api/v1/ws/investigations/{investigation}"), open_timeout=DEADLINE):
        console.wait_for("document.querySelector('article.inv .watching')?.dataset.count === '2'", "2 watchers")
    assert "2 pessoas acompanhando" in console.js("document.querySelector('article.inv .watching').textContent")
    href = console.wait_for("document.querySelector('#investigations article.inv .report a')?.href",
                            "the report link")
    assert re.fullmatch(rf"http://127\.0\.0\.1:{server.port}/api/v1/investigations/INV-\d{{4}}-\d+/report\?format=html",
                        href), href
    state = console.js("""(() => { const a = document.querySelector('#investigations article.inv');
        return {bar: a.querySelector('[role=progressbar]').getAttribute('aria-valuenow'),
                phase: a.querySelector('.phase b').textContent,
                anomalies: a.querySelectorAll('.anomaly').length,
                contracts: [...a.querySelectorAll('.anomaly dd')].map(d => d.textContent).join(' '),
                findings: a.querySelectorAll('.findings li').length,
                who: [...document.querySelectorAll('#log .msg.assistant .who')].map(n => n.textContent)}; })()""")
    assert state["bar"] == "100" and state["phase"] == "Concluída"
    assert state["anomalies"] >= 1 and "CT-" in state["contracts"]
    assert state["findings"] >= 1
    assert any("Zumbi" in who for who in state["who"])
    status, content_type, report = http_get(server, href.split(str(server.port), 1)[1])
    assert status == 200 and content_type.startswith("text/html") and "INV-" in report
    # ended: nothing left to stop following
    assert console.js("document.querySelector('article.inv button.stop').hidden")
    # the duplicate card names both contracts, each with its value (not "esperado X · observado X")
    duplicate = console.js("""[...document.querySelectorAll('article.inv .anomaly')]
        .map(li => li.querySelector('dl').textContent).find(t => t.includes('Contratos'))""")
    assert duplicate is not None and "esperado" not in duplicate, duplicate
    assert len(re.findall(r"CT-[\w-]+", duplicate)) >= 2, duplicate
    # issue 19: the signature is checked in the browser against the server's published key
    verified = console.wait_for(
        "document.querySelector('article.inv .verified.ok, article.inv .verified.bad')?.textContent", "the proof check")
    kid = json.loads(http_get(server, "/api/v1/keys")[2])["keys"][0]["kid"]
    assert verified.startswith(f"Relatório verificado: assinado pela chave {kid}"), verified
    if os.environ.get("CIDADAO_CONSOLE_SCREENSHOT"):  # refresh docs/console.png on demand
        console.screenshot(os.environ["CIDADAO_CONSOLE_SCREENSHOT"])


def test_browser_first_screen_offers_examples_and_says_the_data_is_synthetic(
        console: Page, server: ServerProcess) -> None:
    info = json.loads(http_get(server, "/api/v1/info")[2])
    assert info == {"auth": "optional", "data_origin": "sample"}
    assert console.js("!document.getElementById('sample-notice').hidden"), "the banner shows before any message"
    assert console.js("document.getElementById('token').placeholder") == "token (opcional)"
    examples = console.js("[...document.querySelectorAll('#log .examples button.chip')].map(b => b.textContent)")
    assert "Quais agentes existem?" in examples
    console.js("[...document.querySelectorAll('#log .examples button.chip')]"
               ".find(b => b.textContent === 'Quais agentes existem?').click()")
    console.wait_for(f"{ASSISTANT_DONE}.length === 1", "the reply to the example")
    users = console.js("[...document.querySelectorAll('#log .msg.user')].map(n => n.textContent)")
    assert users == ["Quais agentes existem?"]
    assert console.js("document.querySelector('#log .examples')") is None


def test_browser_counts_agree_in_number(console: Page) -> None:
    """ "1 anomalia", "2 anomalias": the card as a progress event renders it. """
    def progress(n: int) -> None:
        event = {"type": "investigation_progress", "id": f"e-t{n}", "data": {
            "investigation_id": "INV-2026-999", "progress": 40, "status": "anomaly_detection", "message": "Analisando.",
            "records_processed": n, "anomalies_detected": n}}
        console.js(f"for (const h of cidadao.client.handlers.get('message')) h({json.dumps(event)})")
    progress(1)
    line = console.js("document.querySelector('article.inv[data-id=\"INV-2026-999\"] .phase + .phase').textContent")
    assert line.endswith("1 registro · 1 anomalia"), line
    progress(2)
    line = console.js("document.querySelector('article.inv[data-id=\"INV-2026-999\"] .phase + .phase').textContent")
    assert line.endswith("2 registros · 2 anomalias"), line


def test_console_serves_the_sdk_and_every_module_it_imports(server: ServerProcess) -> None:
    status, content_type, entry = http_get(server, "/sdk/cidadao-realtime.js")
    assert status == 200 and content_type.startswith("text/javascript")
    modules = set(re.findall(r'from "\./([\w-]+\.js)"', entry))
    assert {"client.js", "proof.js"} <= modules
    for module in modules:
        status, content_type, text = http_get(server, f"/sdk/{module}")
        assert status == 200 and content_type.startswith("text/javascript") and text, module
    with pytest.raises(urllib.error.HTTPError) as missing:
        http_get(server, "/sdk/../console.html")
    assert missing.value.code == 404


def test_browser_inserts_server_text_as_text(console: Page) -> None:
    payload = '<img src=x onerror="window.__pwned=1"><b>negrito</b>'
    console.type_and_enter(payload)
    console.wait_for(f"(() => {{ const r = {ASSISTANT_DONE}; return r.length ? r : null; }})()", "a reply")
    assert console.js("[...document.querySelectorAll('#log .msg.user')].map(n => n.textContent)") == [payload]
    assert console.js("document.querySelectorAll('#log img, #log b').length") == 0
    assert console.js("window.__pwned === undefined")


def test_browser_reconnects_resumes_and_restores_after_reload(console: Page) -> None:
    console.type_and_enter("Olá")
    console.wait_for(f"{ASSISTANT_DONE}.length === 1", "the first reply")
    cursor = console.js("cidadao.client.lastId")
    assert re.fullmatch(r"[A-Za-z0-9]+-\d+", cursor)
    assert "batch=1" in console.js("cidadao.client.ws.url")
    # the socket drops (as on a network loss): the console reconnects by itself with last_id
    console.js("cidadao.client.ws.close(4000, 'teste')")
    console.wait_for("document.getElementById('status').textContent.includes('retomada')", "a resumed connection")
    assert f"last_id={cursor}" in console.js("cidadao.client.ws.url")
    console.type_and_enter("Quais agentes existem?")
    console.wait_for(f"{ASSISTANT_DONE}.length === 2", "the second reply")
    assert console.js("document.querySelectorAll('#log .msg.user').length") == 2  # no duplicate, no gap
    # a reload starts from an empty page: the session's history is replayed
    console.call("Page.reload")
    console.wait_for("document.readyState === 'complete' && !!window.cidadao", "the reloaded page")
    console.wait_for(f"{ASSISTANT_DONE}.length === 2", "the restored conversation")
    assert console.js("[...document.querySelectorAll('#log .msg.user')].map(n => n.textContent)") == [
        "Olá", "Quais agentes existem?"]


def test_browser_shows_rate_limit_with_retry_after(browser: Page) -> None:
    with threaded_server(rate_burst=3, rate_messages=3, rate_window=60) as limited:
        browser.goto(f"http://127.0.0.1:{limited.port}/?session=limited-{uuid.uuid4().hex[:8]}")
        browser.wait_connected()
        for attempt in range(4):
            browser.type_and_enter(f"Olá {attempt}")
            if browser.js("document.getElementById('errors').textContent.includes('RATE_LIMIT')"):
                break
        errors = browser.wait_for("document.getElementById('errors').textContent", "the RATE_LIMIT error")
        assert "RATE_LIMIT" in errors and re.search(r"Tente novamente em \d+ s", errors), errors
        assert browser.js("document.getElementById('send').disabled"), "sending waits for retry_after"
        assert browser.js("document.getElementById('status').dataset.state") == "connected"


def test_browser_token_field_says_required_under_auth_required(browser: Page) -> None:
    with threaded_server(auth="required", jwt_secret="segredo-de-teste-com-pelo-menos-32-bytes!") as strict:
        browser.goto(f"http://127.0.0.1:{strict.port}/?session=strict-{uuid.uuid4().hex[:8]}")
        assert browser.wait_for("document.getElementById('token').placeholder === 'token (obrigatório)'",
                                "the required token field")
        assert browser.js("document.getElementById('token').required")
        assert browser.js("document.getElementById('token-label').textContent") == "Token JWT (obrigatório)"


def test_browser_follows_an_investigation_across_a_server_restart(browser: Page, tmp_path: Path) -> None:
    """SIGTERM in the middle of an investigation: the console explains the close, queues what
    is typed meanwhile, resumes on the restarted server with no gap and no repeat, and the
    queued message is answered once."""
    from .test_sse_browser import free_port, serve_on

    port = free_port()
    # 0.1 s between investigation events (default 0.25): ~3 s in all, cut after the first anomaly
    with serve_on(port, tmp_path, investigation_step_delay="0.1") as first:
        browser.goto(f"http://127.0.0.1:{port}/?session=restart-{uuid.uuid4().hex[:8]}")
        browser.wait_connected()
        browser.type_and_enter("Investigar contratos do Ministério da Saúde")
        browser.wait_for("document.querySelectorAll('article.inv .anomaly').length >= 1", "a first anomaly")
        bar = "document.querySelector('article.inv [role=progressbar]')"
        progress = int(browser.js(f"{bar}.getAttribute('aria-valuenow')"))
        assert progress < 100, "the restart must cut the investigation midway"
        # every status line the console shows from here (the retries that follow say 1006)
        browser.js("window.__shown = []; cidadao.client.on('state', () =>"
                   " __shown.push(document.getElementById('status').textContent))")
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=DEADLINE)
        status = browser.wait_for("__shown.find(t => t.startsWith('Sem conexão'))", "the close explained")
        assert "o servidor está reiniciando" in status and "1001" in status, status
        browser.type_and_enter("Olá")
        pending = browser.js("document.querySelector('#log .msg.user.pending').textContent")
        assert "será enviada ao reconectar" in pending, pending
    with serve_on(port, tmp_path, investigation_step_delay="0.1"):
        browser.wait_for("document.getElementById('status').textContent.includes('retomada')", "the resumed session")
        browser.wait_for("document.querySelector('article.inv .report')?.hidden === false", "the investigation's end",
                         timeout=DEADLINE * 2)
        browser.wait_for(f"{ASSISTANT_DONE}.some(r => r.who.includes('Drummond'))", "the answer to the queued message")
        users = browser.js("[...document.querySelectorAll('#log .msg.user')].map(n => n.textContent)")
        assert users == ["Investigar contratos do Ministério da Saúde", "Olá"], users
        assert browser.js("document.querySelectorAll('#log .msg.user.pending').length") == 0
        assert browser.js("cidadao.state.gaps") == 0
        assert browser.js("cidadao.client.duplicatesDropped") == 0
        texts = browser.js("[...document.querySelectorAll('article.inv .anomaly')].map(li => li.textContent)")
        assert texts and len(texts) == len(set(texts)), texts
