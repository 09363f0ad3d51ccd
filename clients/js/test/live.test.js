// The SDK against a real `cidadao-trio serve` (127.0.0.1, free port, temporary data dir):
// resume across a restart, the offline queue, HISTORY_GAP, token refresh, batch
// unpacking, the SSE fallback.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, describe, test } from "node:test";

import WebSocket from "ws";

import { CidadaoRealtime, memoryStorage, parseId, verifyReport } from "../src/cidadao-realtime.js";
import { next, startServer } from "./server.js";

const SECRET = "segredo-de-teste-com-pelo-menos-32-bytes!";
const FAST = { backoff: { initialMs: 50, maxMs: 400 }, document: null, window: null };
let unique = 0;
const sid = (name) => `js-${name}-${process.pid}-${++unique}`;
const hour = () => Math.floor(Date.now() / 1000) + 3600;

/** An HS256 JWT signed with the server's secret. */
function jwt(claims, secret = SECRET) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

/** Every durable id a client delivers, to check offsets for gaps and repeats. */
function record(client) {
  const ids = [];
  client.on("message", (m) => { if (!m.id.startsWith("e-")) ids.push(m.id); });
  return ids;
}

function assertContiguous(ids) {
  const offsets = ids.map((id) => parseId(id).offset);
  assert.equal(new Set(ids.map((id) => parseId(id).epoch)).size, 1, `one epoch: ${ids}`);
  offsets.forEach((offset, i) => assert.equal(offset, offsets[0] + i, `no gap or repeat at ${ids[i]}: ${ids}`));
}

describe("against one server", () => {
  let server;
  before(async () => {
    server = await startServer({ auth: "required", jwt_secret: SECRET, jwt_leeway: "0", investigation_step_delay: "0" });
  });
  const opened = [];
  after(async () => {
    for (const client of opened) client.close(); // also when an assertion failed midway
    await server?.dispose();
  });

  test("HISTORY_GAP from a cursor of another epoch is surfaced, then the stream goes live", async () => {
    const storage = memoryStorage();
    const session = sid("gap");
    storage.set(`cidadao:chat:${session}:last_id`, "nenhuma0-5");
    const client = new CidadaoRealtime("chat", session, { ...FAST, url: server.url, WebSocket, storage,
      token: jwt({ sub: "bia", exp: hour() }) });
    const gap = next(client, "history_gap");
    opened.push(client);
    client.connect();
    assert.equal((await gap).code, "HISTORY_GAP");
    assert.equal(client.detail.resumed, false);
    const ids = record(client);
    client.sendChat("Olá");
    await next(client, "chat_complete");
    assertContiguous(ids);
    client.close();
  });

  test("a refused token is retried only with a new one; the token is refreshed before expiry", async () => {
    const tokens = [
      jwt({ sub: "ana", exp: Math.floor(Date.now() / 1000) + 600 }, "outro-segredo-que-o-servidor-nao-conhece!!"),
      jwt({ sub: "ana", exp: Math.floor(Date.now() / 1000) + 2 }),
      jwt({ sub: "ana", exp: Math.floor(Date.now() / 1000) + 3600 }),
    ];
    let asked = 0;
    const getToken = () => tokens[Math.min(asked++, tokens.length - 1)];
    const client = new CidadaoRealtime("chat", sid("auth"), { ...FAST, url: server.url, WebSocket, getToken,
      storage: memoryStorage(), refreshMarginMs: 60_000 });
    const states = [];
    client.onState((d) => states.push([d.state, d.closeCode, d.error?.code]));
    const authOk = next(client, "auth_ok", () => true, 5000);
    opened.push(client);
    client.connect();
    await next(client, "connection");
    assert.deepEqual(states.find(([s]) => s === "waiting"), ["waiting", 1008, "UNAUTHORIZED"]);
    // the second token expires in ≤ 2 s (no leeway): the refresh (halfway) must come first
    const ok = await authOk;
    assert.ok(ok.data.expires_at, "auth_ok carries the new expiry");
    const expired = next(client, "error", (e) => e.data.code === "TOKEN_EXPIRED", 2600).then(() => true, () => false);
    assert.equal(await expired, false, "the connection outlived the first token");
    assert.equal(client.state, "open");
    client.close();
  });

  test("batch envelopes are unpacked: a replayed investigation arrives message by message, in order", async () => {
    const token = jwt({ sub: "caio", exp: hour() });
    const chat = new CidadaoRealtime("chat", sid("inv"), { ...FAST, url: server.url, WebSocket, storage: memoryStorage(), token });
    opened.push(chat);
    chat.connect();
    await next(chat, "connection");
    chat.sendChat("Investigar contratos do Ministério da Saúde");
    const ready = await next(chat, "report_ready", () => true, 20_000);
    chat.close();

    let batches = 0;
    class Counting extends WebSocket {
      constructor(url) {
        super(url);
        this.addEventListener("message", (e) => { if (String(e.data).startsWith('{"type":"batch"')) batches += 1; });
      }
    }
    const watcher = new CidadaoRealtime("investigation", ready.data.investigation_id,
      { ...FAST, url: server.url, WebSocket: Counting, storage: memoryStorage(), token });
    const types = [];
    watcher.on("message", (m) => types.push(m.type));
    const ids = record(watcher);
    opened.push(watcher);
    watcher.connect();
    await next(watcher, "report_ready");
    assert.ok(batches >= 1, "the replay came in batch frames");
    assert.ok(!types.includes("batch"));
    assert.equal(types.find((t) => t !== "auth_ok"), "connection");
    assert.ok(types.filter((t) => t === "anomaly_detected").length >= 1);
    assertContiguous(ids);
    assert.equal(parseId(ids[0]).offset, 1, "the whole stream, from its first event");
    watcher.close();

    // §11: the finished report's signature checks out with the server's key; a changed byte does not
    const headers = { Authorization: `Bearer ${token}` };
    const report = await (await fetch(`${server.url}/api/v1/investigations/${ready.data.investigation_id}/report?format=json`,
      { headers })).json();
    const keys = await (await fetch(`${server.url}/api/v1/keys`)).json();
    const verdict = await verifyReport(report, keys);
    assert.equal(verdict.ok, true, verdict.problems.join(" "));
    assert.equal(verdict.keyId, keys.keys[0].kid);
    const altered = await verifyReport({ ...report, markdown: report.markdown.replace("R$", "US$") }, keys);
    assert.equal(altered.ok, false);
    assert.match(altered.problems.join(" "), /texto do relatório/);
    const forged = await verifyReport({ ...report, proof: { ...report.proof, events: report.proof.events - 1 } }, keys);
    assert.match(forged.problems.join(" "), /assinatura não confere/);
    const stranger = await verifyReport(report, { keys: [{ ...keys.keys[0], kid: "outra" }] });
    assert.match(stranger.problems.join(" "), /não está entre as chaves/);
  });

  test("after repeated WebSocket failures the client falls back to SSE, and chats over it", async () => {
    let tried = 0;
    class Blocked { // a proxy that refuses every upgrade: the browser sees only 1006
      constructor() {
        tried += 1;
        this.readyState = 0;
        setTimeout(() => this.onclose?.({ code: 1006, reason: "" }), 0);
      }
      send() { throw new Error("never open"); }
      close() {}
    }
    const client = new CidadaoRealtime("chat", sid("sse"), { ...FAST, url: server.url, WebSocket: Blocked,
      storage: memoryStorage(), sseAfterFailures: 3, token: jwt({ sub: "davi", exp: hour() }) });
    opened.push(client);
    const open = next(client, "state", (d) => d.state === "open");
    client.connect();
    assert.equal((await open).transport, "sse");
    assert.equal(tried, 3);
    const ids = record(client);
    const echoed = next(client, "chat", (m) => m.data.role === "user");
    const completed = next(client, "chat_complete");
    const queued = client.sendChat("Olá");
    assert.equal((await echoed).data.reply_to, queued);
    const done = await completed;
    assert.equal(done.data.status, "completed");
    assert.equal(client.pending.length, 0);
    assertContiguous(ids);
  });
});

test("resume across a server restart: no gap, no duplicate; a message sent while down is delivered once", async () => {
  let server = await startServer();
  const storage = memoryStorage();
  const client = new CidadaoRealtime("chat", sid("restart"), { ...FAST, url: server.url, WebSocket, storage });
  const ids = record(client);
  const users = [];
  client.on("chat", (m) => { if (m.data.role === "user") users.push(m.data.content); });
  try {
    client.connect();
    await next(client, "connection");
    client.sendChat("Olá");
    await next(client, "chat_complete");
    const waiting = next(client, "state", (d) => d.state === "waiting");
    await server.stop(); // SIGTERM: the server closes with 1001
    assert.equal((await waiting).closeCode, 1001);
    const queued = client.sendChat("Quais agentes existem?");
    assert.deepEqual(client.pending.map((m) => m.id), [queued], "kept while the server is down");
    assert.ok(storage.get(`cidadao:chat:${client.id}:outbox`).includes(queued), "and persisted");
    server = await startServer({}, { port: server.port, dataDir: server.dataDir });
    const resumed = await next(client, "state", (d) => d.state === "open", 15_000);
    assert.equal(resumed.resumed, true);
    await next(client, "chat_complete");
    assert.deepEqual(users, ["Olá", "Quais agentes existem?"]);
    assert.equal(client.pending.length, 0);
    assert.equal(client.duplicatesDropped, 0);
    assertContiguous(ids);
  } finally {
    client.close();
    await server.dispose();
  }
});
