// WebSocket load generator for the cidadao-trio benchmarks (Node.js + ws).
//
//   node benchmarks/loadgen/loadgen.mjs
//
// Driven by the Python orchestrator: one JSON command per line on stdin, one JSON answer per
// line on stdout (diagnostics go to stderr). Only ws://127.0.0.1 / localhost URLs are
// accepted; every command is bounded in count and time; the process exits on `exit`, on EOF
// of stdin, or after MAX_LIFETIME_S whatever happens.
//
// Commands:
//   {"cmd":"open","group":G,"url":U,"count":N,"concurrency":C,"timeout":S,"client":"ws"|"raw"}
//       open N more connections in group G (U may contain {i}: the connection's index in the
//       group); a connection is ready at its first message (the server's greeting). "ws" uses
//       the ws library; "raw" a minimal frame scanner on a net.Socket (for heavy fan-out).
//   {"cmd":"phase","name":P,"from":A,"to":B}    events with A <= seq < B belong to phase P
//   {"cmd":"wait","phase":P,"group":G,"expected":E,"timeout":S,"quiet":Q,"timeline":bool}
//       until G has received E events of P, or S s passed, or nothing arrived for Q s;
//       answers the phase's statistics (latency from sent_at, throughput, msgs per frame,
//       and with timeline, p99/max per second of the phase)
//   {"cmd":"hold","seconds":S}                 count WebSocket pings per connection for S s
//   {"cmd":"pause","group":G} / {"cmd":"resume","group":G}   stop/restart reading the sockets
//   {"cmd":"status"}                            open/closed counts and close codes per group
//   {"cmd":"chat","url":U,"sessions":N,"seconds":S,"message":M,"timeout":T}
//       N sessions, each sending chat turns one after another for S seconds
//   {"cmd":"close","group":G|null,"timeout":S}  close (1000) and wait for the close events
//   {"cmd":"exit"}
import crypto from 'node:crypto';
import net from 'node:net';
import readline from 'node:readline';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';

const MAX_LIFETIME_S = 3600;
const MAX_CONNECTIONS = 20000;
const nowS = () => (performance.timeOrigin + performance.now()) / 1000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const log = (...args) => process.stderr.write(args.join(' ') + '\n');

setTimeout(() => { log('loadgen: lifetime exceeded, exiting'); process.exit(3); }, MAX_LIFETIME_S * 1000).unref();

const groups = new Map(); // name -> Group
const phases = []; // {name, from, to}
let totalConnections = 0;

function checkUrl(url) {
  const parsed = new URL(url.replaceAll('{i}', '0'));
  if (parsed.protocol !== 'ws:' || !['127.0.0.1', 'localhost', '[::1]'].includes(parsed.hostname)) {
    throw new Error(`refusing non-loopback url ${url}`);
  }
}

class Stats {
  constructor() {
    this.count = 0;
    this.frames = 0;
    this.lat = [];
    this.recv = [];
    this.minSent = Infinity;
    this.maxRecv = 0;
    this.firstRecv = Infinity;
  }
  // p99 and max latency per second of the phase (seconds counted from the first sent_at).
  timeline() {
    const buckets = new Map();
    for (let i = 0; i < this.lat.length; i++) {
      const t = Math.floor(this.recv[i] - this.minSent);
      if (!buckets.has(t)) buckets.set(t, []);
      buckets.get(t).push(this.lat[i]);
    }
    return [...buckets.entries()].sort((a, b) => a[0] - b[0]).map(([t, values]) => {
      const v = Float64Array.from(values).sort();
      return { t, n: v.length, p99_ms: v[Math.min(v.length - 1, Math.floor(0.99 * v.length))] * 1000, max_ms: v[v.length - 1] * 1000 };
    });
  }
  summary(expected) {
    const lat = Float64Array.from(this.lat).sort();
    const pct = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] * 1000 : null);
    const span = this.count ? this.maxRecv - this.minSent : 0;
    return {
      delivered: this.count,
      expected,
      frames: this.frames,
      msgs_per_frame: this.frames ? this.count / this.frames : null,
      span_s: span,
      msgs_per_s: span > 0 ? this.count / span : null,
      p50_ms: pct(50), p95_ms: pct(95), p99_ms: pct(99), max_ms: lat.length ? lat[lat.length - 1] * 1000 : null,
    };
  }
}

class Group {
  constructor(name) {
    this.name = name;
    this.conns = [];
    this.closes = new Map();
    this.failed = 0;
    this.stats = new Map(); // phase -> Stats
  }
  stat(phase) {
    let s = this.stats.get(phase);
    if (!s) { s = new Stats(); this.stats.set(phase, s); }
    return s;
  }
}

function group(name) {
  let g = groups.get(name);
  if (!g) { g = new Group(name); groups.set(name, g); }
  return g;
}

const SEQ = Buffer.from('"seq":');
const SENT = Buffer.from('"sent_at":');

function numberAt(buf, start) {
  while (start < buf.length && (buf[start] === 32 || buf[start] === 9)) start++; // json.dumps puts a space
  let end = start;
  while (end < buf.length) {
    const c = buf[end];
    if ((c >= 48 && c <= 57) || c === 46 || c === 45 || c === 101 || c === 69 || c === 43) end++;
    else break;
  }
  return Number(buf.toString('latin1', start, end));
}

function phaseOf(seq) {
  for (const p of phases) if (seq >= p.from && seq < p.to) return p.name;
  return null;
}

// Count the benchmark events in one frame (a single envelope or a batch) without JSON.parse.
function onFrame(g, buf) {
  const recv = nowS();
  let at = buf.indexOf(SEQ);
  let framePhase = null;
  while (at !== -1) {
    const seq = numberAt(buf, at + SEQ.length);
    const sentAt = buf.indexOf(SENT, at);
    if (sentAt === -1) break;
    const sent = numberAt(buf, sentAt + SENT.length);
    const phase = phaseOf(seq);
    if (phase !== null) {
      const s = g.stat(phase);
      s.count++;
      s.lat.push(recv - sent);
      s.recv.push(recv);
      if (sent < s.minSent) s.minSent = sent;
      if (recv > s.maxRecv) s.maxRecv = recv;
      if (framePhase === null) { framePhase = phase; s.frames++; }
    }
    at = buf.indexOf(SEQ, sentAt);
  }
}

function connect(g, url, timeoutS) {
  return new Promise((resolve) => {
    let settled = false;
    const done = (ok) => { if (!settled) { settled = true; clearTimeout(timer); resolve(ok); } };
    const ws = new WebSocket(url, { perMessageDeflate: false, skipUTF8Validation: true, handshakeTimeout: timeoutS * 1000 });
    const conn = { ws, pings: 0, ready: false, closed: false, code: null };
    const timer = setTimeout(() => { done(false); ws.terminate(); }, timeoutS * 1000);
    ws.on('message', (data) => {
      if (!conn.ready) { conn.ready = true; done(true); return; }
      onFrame(g, data);
    });
    ws.on('ping', () => { conn.pings++; });
    ws.on('error', () => { done(false); });
    ws.on('close', (code) => {
      conn.closed = true;
      conn.code = code;
      g.closes.set(code, (g.closes.get(code) || 0) + 1);
      done(false);
    });
    g.conns.push(conn);
  });
}

// A minimal receive-mostly WebSocket client on a raw socket (RFC 6455, client side): no
// per-message objects or events, frames are scanned in place. Several times cheaper than
// `ws` per message, so the load generator is not what limits a fast server's fan-out.
// Answers pings with pongs and close frames with a close; sends nothing else.
function maskedFrame(opcode, payload) {
  const mask = crypto.randomBytes(4);
  const header = Buffer.from([0x80 | opcode, 0x80 | payload.length]); // control payloads are < 126 bytes
  const body = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) body[i] = payload[i] ^ mask[i & 3];
  return Buffer.concat([header, mask, body]);
}

class RawConnection {
  constructor(g, url, timeoutS, resolve) {
    const parsed = new URL(url);
    this.g = g;
    this.pings = 0;
    this.ready = false;
    this.closed = false;
    this.code = null;
    this.upgraded = false;
    this.pending = null;
    this.settle = (ok) => { if (resolve) { const r = resolve; resolve = null; clearTimeout(this.timer); r(ok); } };
    this.timer = setTimeout(() => { this.settle(false); this.terminate(); }, timeoutS * 1000);
    const key = crypto.randomBytes(16).toString('base64');
    this.socket = net.connect({ host: parsed.hostname.replace(/^\[|\]$/g, ''), port: Number(parsed.port || 80) }, () => {
      this.socket.setNoDelay(true);
      this.socket.write(`GET ${parsed.pathname}${parsed.search} HTTP/1.1\r\nHost: ${parsed.host}\r\n` +
        `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    this.socket.on('data', (chunk) => this.onData(chunk));
    this.socket.on('error', () => {});
    this.socket.on('close', () => this.onClosed(this.code === null ? 1006 : this.code));
  }
  onClosed(code) {
    if (this.closed) return;
    this.closed = true;
    this.code = code;
    this.g.closes.set(code, (this.g.closes.get(code) || 0) + 1);
    this.settle(false);
  }
  onData(chunk) {
    let buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = null;
    if (!this.upgraded) {
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) { this.pending = buf; return; }
      if (!buf.toString('latin1', 0, 12).startsWith('HTTP/1.1 101')) { this.terminate(); return; }
      this.upgraded = true;
      buf = buf.subarray(end + 4);
    }
    let at = 0;
    while (buf.length - at >= 2) {
      const b0 = buf[at], b1 = buf[at + 1];
      let len = b1 & 0x7f, head = 2;
      if (len === 126) { if (buf.length - at < 4) break; len = buf.readUInt16BE(at + 2); head = 4; }
      else if (len === 127) { if (buf.length - at < 10) break; len = Number(buf.readBigUInt64BE(at + 2)); head = 10; }
      if (buf.length - at < head + len) break;
      const payload = buf.subarray(at + head, at + head + len);
      at += head + len;
      const opcode = b0 & 0x0f;
      if (opcode === 1 || opcode === 0) {
        if (!this.ready) { this.ready = true; this.settle(true); } else onFrame(this.g, payload);
      } else if (opcode === 9) {
        this.pings++;
        this.socket.write(maskedFrame(10, payload));
      } else if (opcode === 8) {
        this.code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        if (!this.socket.destroyed) this.socket.end(maskedFrame(8, payload.subarray(0, 2)));
      }
    }
    if (at < buf.length) this.pending = Buffer.from(buf.subarray(at)); // copy: the chunk is not ours to keep
  }
  pause() { this.socket.pause(); }
  resume() { this.socket.resume(); }
  close(code) {
    if (this.closed || this.socket.destroyed) return;
    const payload = Buffer.alloc(2);
    payload.writeUInt16BE(code);
    this.socket.write(maskedFrame(8, payload));
    setTimeout(() => this.terminate(), 5000).unref();
  }
  terminate() { this.socket.destroy(); this.onClosed(this.code === null ? 1006 : this.code); }
}

function connectRaw(g, url, timeoutS) {
  return new Promise((resolve) => {
    const conn = new RawConnection(g, url, timeoutS, resolve);
    conn.ws = conn; // same interface as the ws-based connections: pause/resume/close/terminate
    g.conns.push(conn);
  });
}

async function cmdOpen({ group: name, url, count, concurrency = 200, timeout = 120, client = 'ws' }) {
  checkUrl(url);
  if (totalConnections + count > MAX_CONNECTIONS) throw new Error('connection budget exceeded');
  totalConnections += count;
  const g = group(name);
  const base = g.conns.length;
  const started = nowS();
  const deadline = started + timeout;
  let next = 0, ok = 0, failed = 0;
  async function worker() {
    while (next < count && nowS() < deadline) {
      const i = base + next++;
      const target = url.replaceAll('{i}', String(i));
      const limit = Math.max(1, Math.min(30, deadline - nowS()));
      const good = await (client === 'raw' ? connectRaw(g, target, limit) : connect(g, target, limit));
      if (good) ok++; else failed++;
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  g.failed += failed;
  const seconds = nowS() - started;
  return { group: name, opened: ok, failed, seconds, per_s: ok / seconds, open_now: g.conns.filter((c) => !c.closed).length };
}

async function cmdWait({ phase, group: name, expected, timeout = 60, quiet = 5, timeline = false }) {
  const g = group(name);
  const s = g.stat(phase);
  const deadline = nowS() + timeout;
  let last = s.count, lastChange = nowS();
  while (s.count < expected && nowS() < deadline) {
    await sleep(50);
    if (s.count !== last) { last = s.count; lastChange = nowS(); }
    else if (nowS() - lastChange > quiet && s.count > 0) break;
  }
  const extra = timeline ? { timeline: s.timeline(), first_sent_at: s.minSent } : {};
  return { phase, group: name, ...s.summary(expected), complete: s.count >= expected, ...extra };
}

async function cmdHold({ seconds }) {
  for (const g of groups.values()) for (const c of g.conns) c.pings = 0;
  await sleep(Math.min(seconds, 600) * 1000);
  const result = {};
  for (const g of groups.values()) {
    const open = g.conns.filter((c) => !c.closed);
    const pings = open.map((c) => c.pings).sort((a, b) => a - b);
    result[g.name] = {
      open: open.length,
      pings_total: pings.reduce((a, b) => a + b, 0),
      pings_min: pings.length ? pings[0] : null,
      pings_median: pings.length ? pings[Math.floor(pings.length / 2)] : null,
      with_pings: pings.filter((p) => p > 0).length,
    };
  }
  return { seconds, groups: result };
}

function cmdStatus() {
  const result = {};
  for (const g of groups.values()) {
    result[g.name] = {
      total: g.conns.length,
      open: g.conns.filter((c) => !c.closed).length,
      failed: g.failed,
      closes: Object.fromEntries(g.closes),
    };
  }
  return { groups: result };
}

function cmdPause({ group: name, resume = false }) {
  const g = group(name);
  let n = 0;
  for (const c of g.conns) {
    if (c.closed) continue;
    if (resume) c.ws.resume(); else c.ws.pause();
    n++;
  }
  return { group: name, [resume ? 'resumed' : 'paused']: n };
}

async function cmdClose({ group: name = null, timeout = 30 }) {
  const targets = name === null ? [...groups.values()] : [group(name)];
  const conns = targets.flatMap((g) => g.conns).filter((c) => !c.closed);
  for (const c of conns) {
    try { c.ws.resume(); c.ws.close(1000); } catch { c.ws.terminate(); }
  }
  const deadline = nowS() + timeout;
  while (conns.some((c) => !c.closed) && nowS() < deadline) await sleep(50);
  let terminated = 0;
  for (const c of conns) if (!c.closed) { c.ws.terminate(); terminated++; }
  for (const g of targets) {
    totalConnections -= g.conns.length;
    g.conns = [];
  }
  return { closed: conns.length - terminated, terminated };
}

// One chat session: turns one after another until `until`; latencies in seconds.
function chatSession(url, message, until, hardDeadline, result) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 15000 });
    let turn = 0, sentAt = 0, firstSeen = false, chunks = 0;
    const finish = () => { clearTimeout(timer); try { ws.close(1000); } catch { /* closed */ } resolve(); };
    const timer = setTimeout(() => { result.timeouts++; ws.terminate(); resolve(); }, (hardDeadline - nowS()) * 1000);
    const send = () => {
      if (nowS() >= until) { finish(); return; }
      turn++;
      firstSeen = false;
      sentAt = nowS();
      ws.send(JSON.stringify({ type: 'chat', id: `t${turn}`, data: { message } }));
    };
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString());
      if (msg.type === 'connection') { send(); return; }
      const d = msg.data || {};
      if (d.reply_to !== `t${turn}`) {
        if (msg.type === 'error') result.errors[d.code] = (result.errors[d.code] || 0) + 1;
        return;
      }
      if (msg.type === 'chat' && d.role === 'assistant') {
        chunks++;
        if (!firstSeen) { firstSeen = true; result.first.push(nowS() - sentAt); }
      } else if (msg.type === 'chat_complete') {
        result.complete.push(nowS() - sentAt);
        result.turns++;
        if (d.status !== 'completed') result.errors[`status_${d.status}`] = (result.errors[`status_${d.status}`] || 0) + 1;
        result.chunks += chunks;
        chunks = 0;
        send();
      } else if (msg.type === 'error') {
        result.errors[d.code] = (result.errors[d.code] || 0) + 1;
        send();
      }
    });
    ws.on('error', () => {});
    ws.on('close', (code) => { if (code !== 1000 && code !== 1005) result.errors[`close_${code}`] = (result.errors[`close_${code}`] || 0) + 1; finish(); });
  });
}

async function cmdChat({ url, sessions, seconds, message = 'Olá', timeout = 120 }) {
  checkUrl(url);
  if (sessions > 2000) throw new Error('too many chat sessions');
  const result = { turns: 0, chunks: 0, first: [], complete: [], errors: {}, timeouts: 0 };
  const started = nowS();
  const until = started + Math.min(seconds, 600);
  const hard = until + Math.min(timeout, 600);
  await Promise.all(Array.from({ length: sessions }, (_, i) => chatSession(url.replaceAll('{i}', String(i)), message, until, hard, result)));
  const elapsed = nowS() - started;
  const pct = (arr, p) => {
    const a = Float64Array.from(arr).sort();
    return a.length ? a[Math.min(a.length - 1, Math.floor((p / 100) * a.length))] * 1000 : null;
  };
  return {
    sessions, seconds: elapsed, turns: result.turns, turns_per_s: result.turns / elapsed,
    chunks_per_turn: result.turns ? result.chunks / result.turns : null,
    first_chunk_p50_ms: pct(result.first, 50), first_chunk_p99_ms: pct(result.first, 99),
    complete_p50_ms: pct(result.complete, 50), complete_p99_ms: pct(result.complete, 99),
    errors: result.errors, timeouts: result.timeouts,
  };
}

async function handle(line) {
  const command = JSON.parse(line);
  switch (command.cmd) {
    case 'open': return cmdOpen(command);
    case 'phase': phases.push({ name: command.name, from: command.from, to: command.to }); return { ok: true };
    case 'wait': return cmdWait(command);
    case 'hold': return cmdHold(command);
    case 'pause': return cmdPause(command);
    case 'resume': return cmdPause({ ...command, resume: true });
    case 'status': return cmdStatus();
    case 'chat': return cmdChat(command);
    case 'close': return cmdClose(command);
    case 'exit': return null;
    default: throw new Error(`unknown command ${command.cmd}`);
  }
}

const rl = readline.createInterface({ input: process.stdin });
const queue = [];
let busy = false;
let exiting = false;

async function pump() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const line = queue.shift();
    try {
      const result = await handle(line);
      if (result === null) { exiting = true; out({ ok: true, bye: true }); break; }
      out({ ok: true, ...result });
    } catch (err) {
      out({ ok: false, error: String(err && err.stack || err) });
    }
  }
  busy = false;
  if (exiting) {
    for (const g of groups.values()) for (const c of g.conns) c.ws.terminate();
    process.exit(0);
  }
}

rl.on('line', (line) => { if (line.trim()) { queue.push(line); pump(); } });
rl.on('close', () => { queue.push('{"cmd":"exit"}'); pump(); });
out({ ok: true, ready: true, pid: process.pid });
