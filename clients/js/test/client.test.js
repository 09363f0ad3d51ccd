// The SDK's behaviour without a server: backoff timing (fake timers), policy closes,
// duplicate/gap detection, batch unpacking, the offline queue's persistence, visibility.

import assert from "node:assert/strict";
import { beforeEach, describe, mock, test } from "node:test";

import { CidadaoRealtime, Cursor, backoffDelay, eventParser, memoryStorage, OfflineQueue } from "../src/cidadao-realtime.js";
import { FakeSocket, settle } from "./fake.js";

const URL_ = "http://127.0.0.1:9";
const quiet = { WebSocket: FakeSocket, url: URL_, document: null, window: null, sseAfterFailures: Infinity };

beforeEach(() => FakeSocket.reset());

describe("backoff", () => {
  test("full jitter stays under the exponential ceiling and its cap", () => {
    const policy = { initialMs: 500, maxMs: 30_000 };
    assert.equal(backoffDelay(0, policy, () => 0.999), 499);
    assert.equal(backoffDelay(3, policy, () => 0.5), 2000);
    assert.equal(backoffDelay(40, policy, () => 0.999), 29_970);
    assert.equal(backoffDelay(5, policy, () => 0), 0);
  });

  test("transient closes are retried forever, each after its jittered delay", async () => {
    mock.timers.enable({ apis: ["setTimeout"] });
    try {
      const client = new CidadaoRealtime("chat", "s1", { ...quiet, random: () => 0.5 }).connect();
      await settle();
      const expected = [250, 500, 1000, 2000, 4000, 8000, 15_000, 15_000, 15_000, 15_000, 15_000, 15_000];
      for (const [i, wait] of expected.entries()) {
        assert.equal(FakeSocket.made.length, i + 1);
        FakeSocket.made.at(-1).drop(1006);
        await settle();
        assert.equal(client.state, "waiting");
        assert.equal(client.detail.retryInMs, wait);
        mock.timers.tick(wait - 1);
        await settle();
        assert.equal(FakeSocket.made.length, i + 1, `attempt ${i + 2} must wait ${wait} ms`);
        mock.timers.tick(1);
        await settle();
      }
      assert.equal(FakeSocket.made.length, expected.length + 1);
      // a greeting resets the backoff
      FakeSocket.made.at(-1).greet();
      FakeSocket.made.at(-1).drop(1001);
      await settle();
      assert.equal(client.detail.retryInMs, 250);
      client.close();
    } finally {
      mock.timers.reset();
    }
  });

  test("retry_after from the server's error lengthens the wait", async () => {
    mock.timers.enable({ apis: ["setTimeout"] });
    try {
      const client = new CidadaoRealtime("chat", "s1", { ...quiet, random: () => 0.5 }).connect();
      await settle();
      const ws = FakeSocket.made[0];
      ws.open();
      ws.receive({ type: "error", id: "e-1", data: { code: "OVERLOADED", message: "cheio", retry_after: 7 } });
      ws.drop(1013);
      await settle();
      assert.equal(client.detail.retryInMs, 7000);
      client.close();
    } finally {
      mock.timers.reset();
    }
  });
});

describe("policy closes (1008)", () => {
  test("no retry without a new token; a new token from getToken() is retried", async () => {
    let token = "a.b.c";
    const asked = [];
    const client = new CidadaoRealtime("chat", "s1", { ...quiet, getToken: () => { asked.push(token); return token; } }).connect();
    await settle();
    FakeSocket.made[0].open();
    assert.deepEqual(FakeSocket.made[0].sent[0], { type: "auth", data: { token: "a.b.c" } });
    assert.ok(!FakeSocket.made[0].url.includes("token"), "the token never goes in the URL");
    FakeSocket.made[0].receive({ type: "error", id: "e-1", data: { code: "UNAUTHORIZED", message: "não" } });
    FakeSocket.made[0].drop(1008);
    await settle();
    assert.equal(client.state, "failed");
    assert.equal(client.detail.error.code, "UNAUTHORIZED");
    assert.equal(FakeSocket.made.length, 1);

    token = "d.e.f";
    client.connect();
    await settle();
    token = "g.h.i"; // the app logged in again meanwhile
    FakeSocket.made[1].drop(1008);
    await settle();
    assert.equal(client.state, "waiting", "a fresh token is worth a retry");
    client.close();
  });
});

describe("receiving", () => {
  test("batch envelopes are unpacked in order; duplicates dropped; gaps reported", async () => {
    const client = new CidadaoRealtime("chat", "s1", quiet).connect();
    await settle();
    const ws = FakeSocket.made[0];
    ws.greet();
    const seen = [], gaps = [];
    client.on("message", (m) => seen.push(m.id));
    client.on("gap", (g) => gaps.push(g));
    const env = (id) => ({ type: "chat", id, timestamp: "", data: { role: "assistant", content: id } });
    ws.receive({ type: "batch", id: "e-b", data: { count: 3, messages: [env("ep-1"), env("ep-2"), env("ep-3")] } });
    ws.receive(env("ep-2"));
    ws.receive(env("ep-5"));
    assert.deepEqual(seen, ["ep-1", "ep-2", "ep-3", "ep-5"]);
    assert.ok(!seen.includes("e-b"));
    assert.equal(client.duplicatesDropped, 1);
    assert.deepEqual(gaps, [{ expected: 4, got: 5, id: "ep-5" }]);
    assert.equal(client.lastId, "ep-5");
    // the cursor goes in the next URL
    ws.drop(1006);
    client.close();
  });

  test("HISTORY_GAP is surfaced and the next durable id starts a new baseline", () => {
    const cursor = new Cursor(memoryStorage(), "k");
    assert.equal(cursor.accept("old-7").kind, "new");
    cursor.rebase = true;
    assert.equal(cursor.accept("old-3").kind, "new");
    assert.equal(cursor.accept("old-4").kind, "new");
    assert.equal(cursor.accept("new-1").kind, "new", "another epoch is never a duplicate");
  });

  test("presence counts are kept", async () => {
    const client = new CidadaoRealtime("chat", "s1", quiet).connect();
    await settle();
    const ws = FakeSocket.made[0];
    ws.greet();
    ws.receive({ type: "presence", id: "e-p", data: { investigation_id: "INV-2026-001", watching: 3 } });
    ws.receive({ type: "presence", id: "e-q", data: { session_id: "s1", connections: 2 } });
    assert.equal(client.watching.get("INV-2026-001"), 3);
    assert.equal(client.connections, 2);
    client.close();
  });
});

describe("offline queue", () => {
  test("messages sent offline persist, flush in order, and leave on echo or DUPLICATE", async () => {
    const storage = memoryStorage();
    const first = new CidadaoRealtime("chat", "s1", { ...quiet, storage });
    const a = first.sendChat("um");
    const b = first.sendChat("dois");
    assert.equal(FakeSocket.made.length, 0);
    // a reload: a new client on the same storage finds the queue
    const client = new CidadaoRealtime("chat", "s1", { ...quiet, storage }).connect();
    assert.deepEqual(client.pending.map((m) => m.id), [a, b]);
    await settle();
    const ws = FakeSocket.made[0];
    ws.greet();
    assert.deepEqual(ws.sent.map((m) => [m.type, m.id, m.data.message]), [["chat", a, "um"], ["chat", b, "dois"]]);
    const acked = [];
    client.on("acked", (e) => acked.push(e.message.id));
    ws.receive({ type: "chat", id: "x-1", data: { role: "user", content: "um", reply_to: a } });
    ws.receive({ type: "error", id: "e-2", data: { code: "DUPLICATE", message: "já", reply_to: b } });
    assert.deepEqual(acked, [a, b]);
    assert.equal(client.pending.length, 0);
    assert.equal(new OfflineQueue(storage, "cidadao:chat:s1:outbox").size, 0);
    client.close();
  });

  test("a refused message leaves the queue as `rejected`; RATE_LIMIT keeps it for a resend", async () => {
    mock.timers.enable({ apis: ["setTimeout"] });
    try {
      const client = new CidadaoRealtime("chat", "s1", quiet).connect();
      await settle();
      const ws = FakeSocket.made[0];
      ws.greet();
      const bad = client.sendChat("x");
      const slow = client.sendChat("y");
      const rejected = [];
      client.on("rejected", (e) => rejected.push(e.error.code));
      ws.receive({ type: "error", id: "e-1", data: { code: "INVALID_MESSAGE", message: "não", reply_to: bad } });
      ws.receive({ type: "error", id: "e-2", data: { code: "RATE_LIMIT", message: "calma", reply_to: slow, retry_after: 2 } });
      assert.deepEqual(rejected, ["INVALID_MESSAGE"]);
      assert.deepEqual(client.pending.map((m) => m.id), [slow]);
      const before = ws.sent.length;
      mock.timers.tick(2000);
      assert.equal(ws.sent.length, before + 1);
      assert.equal(ws.sent.at(-1).id, slow);
      client.close();
    } finally {
      mock.timers.reset();
    }
  });
});

describe("page visibility and network", () => {
  test("hidden for N minutes closes with 1000; visible again resumes", async () => {
    mock.timers.enable({ apis: ["setTimeout"] });
    try {
      const listeners = {};
      const doc = { visibilityState: "visible", addEventListener: (t, f) => { listeners[t] = f; } };
      const win = { addEventListener: (t, f) => { listeners[t] = f; } };
      const client = new CidadaoRealtime("chat", "s1", { ...quiet, document: doc, window: win, hiddenCloseAfterMs: 60_000 }).connect();
      await settle();
      FakeSocket.made[0].greet();
      doc.visibilityState = "hidden";
      listeners.visibilitychange();
      mock.timers.tick(59_999);
      assert.equal(client.state, "open");
      mock.timers.tick(1);
      assert.equal(client.state, "paused");
      assert.equal(FakeSocket.made[0].closedWith, 1000);
      doc.visibilityState = "visible";
      listeners.visibilitychange();
      await settle();
      assert.equal(FakeSocket.made.length, 2);
      FakeSocket.made[1].greet();
      // the server's idle timeout (1000) while hidden: no reconnect until the page is back
      doc.visibilityState = "hidden";
      listeners.visibilitychange();
      FakeSocket.made[1].drop(1000, "idle timeout");
      await settle();
      assert.equal(client.state, "paused");
      mock.timers.tick(120_000);
      await settle();
      assert.equal(FakeSocket.made.length, 2);
      doc.visibilityState = "visible";
      listeners.visibilitychange();
      await settle();
      assert.equal(FakeSocket.made.length, 3);
      FakeSocket.made[2].greet();
      listeners.offline();
      assert.equal(client.state, "offline");
      mock.timers.tick(120_000);
      await settle();
      assert.equal(FakeSocket.made.length, 3, "no attempts while offline");
      listeners.online();
      await settle();
      assert.equal(FakeSocket.made.length, 4, "back online: at once");
      client.close();
    } finally {
      mock.timers.reset();
    }
  });
});

test("the SSE parser splits events, skips comments and keeps ids", () => {
  const got = [];
  const feed = eventParser((e) => got.push(e));
  feed(": ping\n\nid: ep-1\nevent: chat\ndata: {\"a\":");
  feed("1}\n\ndata: x\r\n\r\n");
  assert.deepEqual(got, [{ id: "ep-1", event: "chat", data: "{\"a\":1}" }, { id: null, event: "message", data: "x" }]);
});
