// A scripted WebSocket for the tests that need no server: each instance is recorded, and
// the test opens, feeds and closes it by hand.

export class FakeSocket {
  /** @type {FakeSocket[]} */
  static made = [];
  static reset() { FakeSocket.made = []; }

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeSocket.made.push(this);
  }
  send(text) { this.sent.push(JSON.parse(text)); }
  close(code = 1000) { this.readyState = 3; this.closedWith = code; }

  // driven by the test
  open() { this.readyState = 1; this.onopen?.({}); }
  receive(message) { this.onmessage?.({ data: JSON.stringify(message) }); }
  greet(extra = {}) {
    this.open();
    this.receive({ type: "connection", id: "e-x-0", timestamp: "", data: { status: "connected", resumed: false, idle_timeout_s: 300, ...extra } });
  }
  drop(code = 1006, reason = "") { this.readyState = 3; this.onclose?.({ code, reason }); }
}

/** Let pending promise callbacks (the client's async connect) run. */
export async function settle() {
  for (let i = 0; i < 5; i++) await new Promise((ok) => setImmediate(ok));
}
