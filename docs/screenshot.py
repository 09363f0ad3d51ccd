"""Take docs/console.png: the web console after a chat and a finished investigation.

Run from the repository root: ``.venv/bin/python docs/screenshot.py``. It starts the server
on 127.0.0.1 (in-memory store) and a headless Chromium, exactly like tests/system/test_console.py.
"""

from __future__ import annotations

import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.process import serve  # noqa: E402
from tests.test_console import ASSISTANT_DONE, chromium  # noqa: E402

OUT = ROOT / "docs" / "console.png"


def main() -> None:
    with serve(store="memory", reply_chunk_delay=0.02) as server, chromium(1360, 940) as page:
        page.goto(f"http://127.0.0.1:{server.port}/?session=demo-console")
        page.wait_connected()
        page.type_and_enter("Olá")
        page.wait_for(f"{ASSISTANT_DONE}.length === 1", "Drummond's reply")
        page.type_and_enter("Investigar contratos do Ministério da Saúde")
        page.wait_for("!!document.querySelector('#investigations .report a')", "the report link", timeout=30)
        page.js("document.getElementById('investigations').scrollTop = 0; document.activeElement.blur()")
        time.sleep(0.5)  # let the progress bar's transition finish
        page.screenshot(str(OUT))
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
