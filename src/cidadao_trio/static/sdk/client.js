// One stream of the Cidadão.AI real-time server (PROTOCOL.md): a chat session or an
// investigation, kept alive across network loss, server restarts, token expiry and
// background tabs, without losing or repeating a message.

import { backoffDelay } from "./backoff.js";
import { Cursor, isDurable } from "./cursor.js";
import { OfflineQueue, uuid } from "./outbox.js";
import { readEventStream } from "./sse.js";
import { defaultStorage } from "./storage.js";
import { refreshDelay, tokenExpiry } from "./token.js";

/** Close codes that retrying cannot fix: our own bad frames (1003 binary, 1007 bad UTF-8, 1009 too big). */
const FATAL_CLOSES = new Set([1003, 1007, 1009]);
/** Error codes after which a stream ends as a policy refusal (close 1008 on WebSocket). */
const POLICY_ERRORS = new Set(["UNAUTHORIZED", "TOKEN_EXPIRED", "FORBIDDEN"]);
/** Errors that leave a queued message queued, to be resent after `retry_after`. */
const RETRY_ERRORS = new Set(["RATE_LIMIT", "UNAVAILABLE", "OVERLOADED"]);
const OPEN = 1;
const MAX_CHAT_CHARS = 8000;

/**
 * The types are spelled out in index.d.ts (clients/js/); these are their JSDoc shadows.
 * @typedef {{type: string, data: Record<string, any>, timestamp?: string, id?: string}} Envelope
 * @typedef {"idle" | "connecting" | "open" | "waiting" | "paused" | "offline" | "closed" | "failed"} ConnectionState
 * @typedef {{state: ConnectionState, transport: "websocket" | "sse", attempt: number, resumed?: boolean,
 *   retryInMs?: number, closeCode?: number, reason?: string, error?: Record<string, any>}} StateDetail
 * @typedef {Record<string, any>} ClientOptions
 */

/** @param {string} base @returns {{http: string, ws: string}} */
function origins(base) {
  const url = new URL(base);
  const secure = url.protocol === "https:" || url.protocol === "wss:";
  const host = url.host;
  return { http: `${secure ? "https" : "http"}://${host}`, ws: `${secure ? "wss" : "ws"}://${host}` };
}

export class CidadaoRealtime {
  /**
   * @param {"chat" | "investigation"} kind
   * @param {string} id session id or investigation id
   * @param {ClientOptions} [options]
   */
  constructor(kind, id, options = {}) {
    if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(id)) throw new TypeError(`invalid ${kind} id: ${id}`);
    const g = /** @type {any} */ (globalThis);
    this.kind = kind;
    this.id = id;
    const base = options.url ?? g.location?.origin;
    if (!base) throw new TypeError("options.url is required outside a browser page");
    this.origins = origins(base);
    this.WebSocketImpl = options.WebSocket ?? g.WebSocket;
    this.fetchImpl = options.fetch ?? (g.fetch ? g.fetch.bind(g) : undefined);
    this.getToken = options.getToken ?? (async () => options.token ?? null);
    this.random = options.random ?? Math.random;
    this.backoff = { initialMs: options.backoff?.initialMs ?? 500, maxMs: options.backoff?.maxMs ?? 30_000 };
    this.hiddenCloseAfterMs = options.hiddenCloseAfterMs ?? 5 * 60_000;
    this.sseAfterFailures = options.sseAfterFailures ?? 3;
    this.refreshMarginMs = options.refreshMarginMs ?? 60_000;
    this.pingIntervalMs = options.pingIntervalMs ?? null;
    this.document = options.document === undefined ? g.document ?? null : options.document;
    this.window = options.window === undefined ? (g.addEventListener && g.document ? g : null) : options.window;
    const storage = options.storage ?? defaultStorage();
    const key = `cidadao:${kind}:${id}`;
    this.cursor = new Cursor(storage, `${key}:last_id`);
    this.queue = new OfflineQueue(storage, `${key}:outbox`);

    /** @type {Map<string, Set<(value: any) => void>>} */
    this.handlers = new Map();
    /** @type {StateDetail} */
    this.detail = { state: "idle", transport: "websocket", attempt: 0 };
    /** @type {"websocket" | "sse"} */
    this.transport = options.transport ?? "websocket";
    /** Presence (§9): watchers per investigation, and this session's open connections. */
    /** @type {Map<string, number>} */
    this.watching = new Map();
    /** @type {number | null} */
    this.connections = null;
    this.duplicatesDropped = 0;

    this.wanted = false;
    this.paused = false; // closed by the Page Visibility rule; reopens when visible
    this.offline = false;
    this.attempt = 0;
    this.failures = 0; // consecutive connects that never reached the greeting
    this.greeted = false;
    /** @type {any} */
    this.ws = null;
    /** @type {AbortController | null} */
    this.sse = null;
    /** @type {string | null} */
    this.token = null;
    /** @type {Record<string, any> | null} */
    this.lastError = null;
    /** @type {Record<string, ReturnType<typeof setTimeout> | undefined>} */
    this.timers = {};
    this.generation = 0; // bumps at every new attempt: callbacks of older ones are ignored
    this.#watchPage();
  }

  // ---- public API -----------------------------------------------------------------------

  /** @returns {ConnectionState} */
  get state() { return this.detail.state; }

  /** The id of the last durable message seen (the resume cursor). */
  get lastId() { return this.cursor.lastId; }

  /** Messages sent but not yet acknowledged by the server, oldest first. */
  get pending() { return this.queue.all(); }

  /** Start (or restart after `failed`/`close()`): connects and keeps the stream alive. */
  connect() {
    this.wanted = true;
    this.paused = false;
    this.attempt = 0;
    this.#open();
    return this;
  }

  /** Close for good (code 1000); queued messages stay persisted for a later connect(). */
  close() {
    this.wanted = false;
    this.#teardown(1000, "client closed");
    this.#setState({ state: "closed" });
  }

  /**
   * @param {string} type a message type (`chat`, `anomaly_detected`, …) or `message`, `state`,
   *   `gap`, `history_gap`, `acked`, `rejected`, `presence`
   * @param {(value: any) => void} handler
   * @returns {() => void} unsubscribe
   */
  on(type, handler) {
    let set = this.handlers.get(type);
    if (!set) this.handlers.set(type, (set = new Set()));
    set.add(handler);
    return () => { set?.delete(handler); };
  }

  /** Call `handler` with the current state now and at every change. @param {(d: StateDetail) => void} handler */
  onState(handler) {
    handler(this.detail);
    return this.on("state", handler);
  }

  /**
   * Queue a chat message (persisted; resent until echoed). @returns {string} its id
   * @param {string} text @param {{context?: Record<string, unknown>}} [extra]
   */
  sendChat(text, extra = {}) {
    this.#chatOnly("sendChat");
    if (typeof text !== "string" || text.length < 1 || text.length > MAX_CHAT_CHARS) {
      throw new RangeError(`a chat message has 1–${MAX_CHAT_CHARS} characters`);
    }
    /** @type {Record<string, unknown>} */
    const data = { message: text };
    if (extra.context) data.context = extra.context;
    return this.#enqueue("chat", data);
  }

  /** @param {string} investigationId @returns {string} */
  subscribe(investigationId) {
    this.#chatOnly("subscribe");
    return this.#enqueue("subscribe", { investigation_id: investigationId });
  }

  /** @param {string} investigationId @returns {string} */
  unsubscribe(investigationId) {
    this.#chatOnly("unsubscribe");
    return this.#enqueue("unsubscribe", { investigation_id: investigationId });
  }

  /** Stop the agent reply in progress (not queued: it only means something now). @param {string} [replyTo] */
  cancel(replyTo) {
    this.#chatOnly("cancel");
    return this.#sendNow({ type: "cancel", id: uuid(), data: replyTo ? { reply_to: replyTo } : {} });
  }

  /** @param {boolean} isTyping */
  typing(isTyping) {
    this.#chatOnly("typing");
    return this.#sendNow({ type: "typing", data: { isTyping } });
  }

  // ---- connecting -------------------------------------------------------------------------

  async #open() {
    const generation = ++this.generation;
    this.#teardown();
    if (!this.wanted) return;
    if (this.offline) { this.#setState({ state: "offline" }); return; }
    if (this.paused) { this.#setState({ state: "paused" }); return; }
    this.greeted = false;
    this.lastError = null;
    this.#setState({ state: "connecting", attempt: this.attempt });
    let token;
    try { token = await this.getToken(); } catch { token = this.token; }
    if (generation !== this.generation) return;
    this.token = token ?? null;
    if (this.transport === "sse") this.#openSse(generation);
    else this.#openWebSocket(generation);
  }

  /** @param {number} generation */
  #openWebSocket(generation) {
    const path = this.kind === "chat" ? "/api/v1/ws/chat/" : "/api/v1/ws/investigations/";
    let url = `${this.origins.ws}${path}${encodeURIComponent(this.id)}?batch=1`;
    if (this.cursor.lastId) url += `&last_id=${encodeURIComponent(this.cursor.lastId)}`;
    let ws;
    try {
      if (!this.WebSocketImpl) throw new Error("no WebSocket implementation");
      ws = new this.WebSocketImpl(url);
    } catch {
      this.#closed(generation, 1006, "");
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      // The token goes in the first message, never in the URL (URLs end up in logs).
      if (this.token) ws.send(JSON.stringify({ type: "auth", data: { token: this.token } }));
    };
    ws.onmessage = (/** @type {{data: any}} */ event) => {
      if (generation === this.generation && typeof event.data === "string") this.#frame(event.data);
    };
    ws.onclose = (/** @type {{code: number, reason: string}} */ event) => this.#closed(generation, event.code || 1006, event.reason || "");
    ws.onerror = () => { /* a close event follows */ };
  }

  /** @param {number} generation */
  async #openSse(generation) {
    if (!this.fetchImpl) { this.#closed(generation, 1006, "no fetch"); return; }
    const path = this.kind === "chat" ? "/api/v1/sse/chat/" : "/api/v1/sse/investigations/";
    const controller = new AbortController();
    this.sse = controller;
    /** @type {Record<string, string>} */
    const headers = { Accept: "text/event-stream" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (this.cursor.lastId) headers["Last-Event-ID"] = this.cursor.lastId;
    let code = 1006;
    try {
      const response = await this.fetchImpl(`${this.origins.http}${path}${encodeURIComponent(this.id)}?batch=1`,
        { headers, signal: controller.signal, cache: "no-store" });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        const retry = Number(response.headers.get("Retry-After")) || body.retry_after;
        this.lastError = { code: body.error, message: body.message, retry_after: retry };
        code = response.status === 401 || response.status === 403 ? 1008
          : response.status === 404 ? 4404 : 1013;
        this.#emit("error", { type: "error", data: { code: body.error, message: body.message }, id: "e-http" });
      } else {
        if (!response.body) throw new Error("no body");
        await readEventStream(response.body, (event) => {
          if (generation === this.generation) this.#frame(event.data);
        });
        code = this.lastError && POLICY_ERRORS.has(this.lastError.code) ? 1008 : 1006;
      }
    } catch {
      code = 1006;
    }
    if (this.sse === controller) this.sse = null;
    if (!controller.signal.aborted) this.#closed(generation, code, "");
  }

  /** @param {number} generation @param {number} code @param {string} reason */
  async #closed(generation, code, reason) {
    if (generation !== this.generation) return;
    this.ws = null;
    this.#clearTimer("ping");
    this.#clearTimer("refresh");
    if (!this.wanted) return;
    if (code === 1000 && this.#hidden()) this.paused = true; // idle timeout while hidden: wait for the page to return
    if (this.paused) { this.#setState({ state: "paused", closeCode: code }); return; }
    if (this.offline) { this.#setState({ state: "offline", closeCode: code }); return; }
    const error = this.lastError;
    if (FATAL_CLOSES.has(code) || code === 4404) {
      this.wanted = false;
      this.#setState({ state: "failed", closeCode: code, reason, error: error ?? undefined });
      return;
    }
    if (code === 1008) {
      // A policy close is retried only with a token other than the refused one.
      const refused = this.token;
      let fresh = null;
      try { fresh = await this.getToken(); } catch { fresh = null; }
      if (generation !== this.generation) return;
      if (!fresh || fresh === refused) {
        this.wanted = false;
        this.#setState({ state: "failed", closeCode: code, reason, error: error ?? undefined });
        return;
      }
    }
    if (!this.greeted) this.failures += 1;
    if (this.transport === "websocket" && this.failures >= this.sseAfterFailures && this.fetchImpl && code !== 1008) {
      this.transport = "sse"; // WebSocket keeps failing before the greeting: a proxy may block it
      this.failures = 0;
    }
    let wait = backoffDelay(this.attempt, this.backoff, this.random);
    this.attempt += 1;
    if (error && typeof error.retry_after === "number" && error.retry_after > 0) {
      wait = Math.max(wait, error.retry_after * 1000);
    }
    this.#setState({ state: "waiting", attempt: this.attempt, retryInMs: wait, closeCode: code, reason, error: error ?? undefined });
    this.timers.retry = setTimeout(() => this.#open(), wait);
  }

  /** Close the current transport without reconnecting from its close event. @param {number} [code] @param {string} [reason] */
  #teardown(code = 1000, reason = "") {
    for (const name of ["retry", "ping", "refresh", "resend"]) this.#clearTimer(name);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = ws.onmessage = ws.onopen = null;
      ws.onerror = () => {};
      try { ws.close(code, reason); } catch { /* already closing */ }
    }
    const sse = this.sse;
    this.sse = null;
    if (sse) sse.abort();
  }

  // ---- receiving --------------------------------------------------------------------------

  /** @param {string} text */
  #frame(text) {
    let message;
    try { message = JSON.parse(text); } catch { return; }
    if (!message || typeof message !== "object") return;
    if (message.type === "batch" && Array.isArray(message.data?.messages)) {
      for (const member of message.data.messages) this.#deliver(member);
    } else {
      this.#deliver(message);
    }
  }

  /** @param {Envelope} m */
  #deliver(m) {
    if (!m || typeof m.type !== "string") return;
    const d = m.data && typeof m.data === "object" ? m.data : {};
    if (isDurable(m.id)) {
      const seen = this.cursor.accept(/** @type {string} */ (m.id));
      if (seen.kind === "duplicate") { this.duplicatesDropped += 1; return; }
      if (seen.kind === "gap") this.#emit("gap", { expected: seen.expected, got: seen.got, id: m.id });
    }
    switch (m.type) {
      case "connection":
        this.greeted = true;
        this.failures = 0;
        this.attempt = 0;
        this.#setState({ state: "open", resumed: !!d.resumed });
        this.#startPinging(Number(d.idle_timeout_s) || 300);
        this.#scheduleRefresh();
        this.#flush();
        break;
      case "error": this.#onError(d); break;
      case "chat":
        if (d.role === "user" && typeof d.reply_to === "string") this.#ack(d.reply_to, m);
        break;
      case "subscribed":
      case "unsubscribed":
        this.#ackSubscription(m.type === "subscribed" ? "subscribe" : "unsubscribe", d, m);
        break;
      case "presence":
        if (typeof d.investigation_id === "string") this.watching.set(d.investigation_id, Number(d.watching) || 0);
        if (typeof d.connections === "number") this.connections = d.connections;
        break;
      default: break;
    }
    this.#emit(m.type, m);
    this.#emit("message", m);
  }

  /** @param {Record<string, any>} d */
  #onError(d) {
    this.lastError = d;
    const replyTo = typeof d.reply_to === "string" ? d.reply_to : null;
    if (d.code === "HISTORY_GAP") {
      this.cursor.rebase = true; // the digest and live messages that follow start a new baseline
      this.#emit("history_gap", d);
    }
    if (!replyTo || !this.queue.has(replyTo)) return;
    if (d.code === "DUPLICATE") { this.#ack(replyTo, null); return; }
    if (RETRY_ERRORS.has(d.code)) {
      const wait = Math.max(1, Number(d.retry_after) || 1) * 1000;
      this.#clearTimer("resend");
      this.timers.resend = setTimeout(() => this.#flush(), wait);
      return;
    }
    const refused = this.queue.ack(replyTo);
    if (refused) this.#emit("rejected", { message: refused, error: d });
  }

  /** @param {string} id @param {Envelope | null} echo */
  #ack(id, echo) {
    const message = this.queue.ack(id);
    if (message) this.#emit("acked", { message, echo });
  }

  /** @param {string} type @param {Record<string, any>} d @param {Envelope} m */
  #ackSubscription(type, d, m) {
    const byId = typeof d.reply_to === "string" && this.queue.has(d.reply_to) ? d.reply_to : null;
    const match = byId ?? this.queue.all().find((q) => q.type === type && q.data.investigation_id === d.investigation_id)?.id;
    if (match) this.#ack(match, m);
  }

  // ---- sending ----------------------------------------------------------------------------

  /** @param {string} type @param {Record<string, unknown>} data */
  #enqueue(type, data) {
    const message = { type, id: uuid(), data };
    if (!this.queue.push(message)) throw new RangeError("offline queue is full");
    if (this.greeted) this.#sendNow(message);
    return message.id;
  }

  /** Resend everything not yet acknowledged, in order. */
  #flush() {
    this.#clearTimer("resend");
    for (const message of this.queue.all()) {
      if (!this.#sendNow(message)) break;
    }
  }

  /** @param {{type: string, id?: string, data?: Record<string, unknown>}} message @returns {boolean} sent */
  #sendNow(message) {
    if (!this.greeted) return false;
    if (this.transport === "websocket") {
      if (!this.ws || this.ws.readyState !== OPEN) return false;
      this.ws.send(JSON.stringify(message));
      return true;
    }
    if (this.kind !== "chat" || !this.fetchImpl) return false;
    /** @type {Record<string, string>} */
    const headers = { "Content-Type": "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    this.fetchImpl(`${this.origins.http}/api/v1/chat/${encodeURIComponent(this.id)}/messages`,
      { method: "POST", headers, body: JSON.stringify(message) })
      .then(async (/** @type {Response} */ response) => {
        if (response.ok || !message.id) return;
        const body = await response.json().catch(() => ({}));
        this.#onError({ code: body.error, message: body.message, reply_to: message.id,
          retry_after: Number(response.headers.get("Retry-After")) || body.retry_after });
      })
      .catch(() => { /* stays queued; resent at the next connect */ });
    return true;
  }

  // ---- timers: heartbeat, token refresh, page visibility ----------------------------------

  /** Keep the server's idle timer (no client message for `idle_timeout_s`) from closing us. @param {number} idleSeconds */
  #startPinging(idleSeconds) {
    this.#clearTimer("ping");
    if (this.transport !== "websocket" || this.#hidden()) return; // the heartbeat pauses in the background
    const every = this.pingIntervalMs ?? Math.max(1000, (idleSeconds * 1000) / 2);
    const tick = () => {
      this.#sendNow({ type: "ping" });
      this.timers.ping = setTimeout(tick, every);
    };
    this.timers.ping = setTimeout(tick, every);
  }

  #scheduleRefresh() {
    this.#clearTimer("refresh");
    const expiresAt = tokenExpiry(this.token);
    if (expiresAt === null) return;
    const wait = refreshDelay(expiresAt, Date.now(), this.refreshMarginMs);
    this.timers.refresh = setTimeout(async () => {
      let fresh = null;
      try { fresh = await this.getToken(); } catch { fresh = null; }
      if (!fresh || fresh === this.token) return; // nothing newer: the server will close 1008 at expiry
      this.token = fresh;
      if (this.transport === "websocket") {
        this.#sendNow({ type: "auth", data: { token: fresh } });
        this.#scheduleRefresh();
      } else {
        this.#open(); // SSE cannot re-authenticate in place: reopen, resuming from the cursor
      }
    }, wait);
  }

  #hidden() { return !!this.document && this.document.visibilityState === "hidden"; }

  #watchPage() {
    const doc = this.document;
    if (doc && typeof doc.addEventListener === "function") {
      doc.addEventListener("visibilitychange", () => {
        if (this.#hidden()) {
          this.#clearTimer("ping");
          this.#clearTimer("hidden");
          this.timers.hidden = setTimeout(() => {
            if (!this.wanted) return;
            this.paused = true;
            this.#teardown(1000, "page hidden");
            this.#setState({ state: "paused" });
          }, this.hiddenCloseAfterMs);
        } else {
          this.#clearTimer("hidden");
          if (this.paused) {
            this.paused = false;
            this.attempt = 0;
            if (this.wanted) this.#open();
          } else if (this.greeted) {
            this.#startPinging(300);
          }
        }
      });
    }
    const win = this.window;
    if (win && typeof win.addEventListener === "function") {
      win.addEventListener("offline", () => {
        this.offline = true;
        if (!this.wanted) return;
        this.#teardown(1000, "offline");
        this.#setState({ state: "offline" });
      });
      win.addEventListener("online", () => {
        this.offline = false;
        this.attempt = 0;
        if (this.wanted) this.#open();
      });
    }
  }

  /** @param {string} name */
  #clearTimer(name) {
    clearTimeout(this.timers[name]);
    delete this.timers[name];
  }

  // ---- events -----------------------------------------------------------------------------

  /** @param {Partial<StateDetail> & {state: ConnectionState}} next */
  #setState(next) {
    this.detail = { transport: this.transport, attempt: this.attempt, ...next };
    this.#emit("state", this.detail);
  }

  /** @param {string} type @param {unknown} value */
  #emit(type, value) {
    for (const handler of [...(this.handlers.get(type) ?? [])]) {
      try { handler(value); } catch (error) { queueMicrotask(() => { throw error; }); }
    }
  }

  /** @param {string} what */
  #chatOnly(what) {
    if (this.kind !== "chat") throw new TypeError(`${what}() is for chat streams; an investigation stream only receives`);
  }
}
