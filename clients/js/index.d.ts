// Types of the Cidadão.AI real-time client (PROTOCOL.md). Hand-written: the package is
// plain ESM with JSDoc; `tsc --noEmit --strict` checks this file and test/types.ts.

export type Severity = "low" | "medium" | "high" | "critical";
export type Phase = "initializing" | "data_retrieval" | "anomaly_detection" | "forensic_enrichment"
  | "summary_generation" | "completed" | "failed" | "cancelled";
export type ErrorCode = "INVALID_JSON" | "INVALID_MESSAGE" | "UNKNOWN_TYPE" | "UNSUPPORTED" | "RATE_LIMIT"
  | "UNAUTHORIZED" | "TOKEN_EXPIRED" | "FORBIDDEN" | "NOT_FOUND" | "OVERLOADED" | "HISTORY_GAP" | "DUPLICATE"
  | "UNAVAILABLE" | "INTERNAL_ERROR";

export interface Envelope<T extends string = string, D = Record<string, unknown>> {
  type: T;
  data: D;
  /** RFC 3339, UTC, millisecond precision. */
  timestamp: string;
  /** "<epoch>-<offset>" for durable messages, "e-…" for ephemeral ones. */
  id: string;
}

export interface ConnectionData { status: "connected"; session_id?: string; investigation_id?: string; message: string;
  resumed: boolean; heartbeat_s: number; idle_timeout_s: number; max_message_bytes: number; }
export interface ChatData { role: "assistant" | "user"; content: string; agent_id?: string; agent_name?: string;
  chunk?: boolean; chunk_index?: number; reply_to?: string; }
export interface ChatCompleteData { status: "completed" | "cancelled" | "failed"; agent_id: string; agent_name: string;
  content: string; suggested_actions: string[]; investigation_id?: string; reply_to?: string; }
export interface TypingData { agent?: string; agent_id?: string; role?: "user"; isTyping: boolean; }
export interface SubscriptionData { investigation_id: string; message: string; reply_to?: string; }
export interface ProgressData { investigation_id: string; update_type: "progress"; progress: number; status: Phase;
  message: string; records_processed?: number; anomalies_detected?: number; }
export interface AnomalyData { investigation_id: string; anomaly_id: string; anomaly_type: string; severity: Severity;
  confidence: number; description: string; details: Record<string, unknown>; agent_id?: string; }
export interface FindingData { investigation_id: string; agent_id: string; agent_name: string; finding_type: string;
  summary: string; details: Record<string, unknown>; }
export interface Proof { chain_head: string; events: number; dataset_sha256: string | null; report_sha256: string;
  key_id: string; signature: string; [field: string]: unknown; }
export interface ReportReadyData { investigation_id: string; formats: string[]; url: string;
  summary: { total_records: number; anomalies_found: number; total_value: number; suspicious_value: number;
    risk_score: number; [field: string]: unknown }; proof?: Proof; }
export interface FailedData { investigation_id: string; reason: string; }
export interface AuthOkData { expires_at: string | number; session_claimed?: true; }
export interface ErrorData { code: ErrorCode; message: string; reply_to?: string; retry_after?: number; }
export interface PresenceData { investigation_id?: string; watching?: number; session_id?: string; connections?: number; }

/** Server → client messages by type (a `batch` is unpacked before anyone sees it). */
export interface MessageMap {
  connection: Envelope<"connection", ConnectionData>;
  chat: Envelope<"chat", ChatData>;
  chat_complete: Envelope<"chat_complete", ChatCompleteData>;
  typing: Envelope<"typing", TypingData>;
  pong: Envelope<"pong", { reply_to?: string }>;
  subscribed: Envelope<"subscribed", SubscriptionData>;
  unsubscribed: Envelope<"unsubscribed", SubscriptionData>;
  investigation_progress: Envelope<"investigation_progress", ProgressData>;
  anomaly_detected: Envelope<"anomaly_detected", AnomalyData>;
  agent_finding: Envelope<"agent_finding", FindingData>;
  report_ready: Envelope<"report_ready", ReportReadyData>;
  investigation_failed: Envelope<"investigation_failed", FailedData>;
  auth_ok: Envelope<"auth_ok", AuthOkData>;
  error: Envelope<"error", ErrorData>;
  presence: Envelope<"presence", PresenceData>;
}
export type ServerMessage = MessageMap[keyof MessageMap];

export type ConnectionState = "idle" | "connecting" | "open" | "waiting" | "paused" | "offline" | "closed" | "failed";
export interface StateDetail {
  state: ConnectionState;
  transport: "websocket" | "sse";
  /** Reconnection attempts since the last greeting. */
  attempt: number;
  resumed?: boolean;
  /** While `waiting`: the delay before the next attempt. */
  retryInMs?: number;
  closeCode?: number;
  reason?: string;
  /** The server's `error` that explains the close, if any. */
  error?: Partial<ErrorData>;
}

export interface Outgoing { type: "chat" | "subscribe" | "unsubscribe"; id: string; data: Record<string, unknown>; }

/** The client's own events, besides every message type. */
export interface ClientEvents extends MessageMap {
  /** Every server message, after batch unpacking and duplicate suppression. */
  message: ServerMessage;
  state: StateDetail;
  /** A durable offset was skipped (should not happen: the server resumes without gaps). */
  gap: { expected: number; got: number; id: string };
  /** The cursor was older than the retained history: a digest follows, older messages are lost. */
  history_gap: ErrorData;
  /** A queued message the server accepted (its echo, or `error DUPLICATE`). */
  acked: { message: Outgoing; echo: ServerMessage | null };
  /** A queued message the server refused for good (e.g. INVALID_MESSAGE). */
  rejected: { message: Outgoing; error: ErrorData };
}

export interface KeyValue { get(key: string): string | null; set(key: string, value: string): void; remove(key: string): void; }

export interface WebSocketLike {
  readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ClientOptions {
  /** The server, e.g. "https://tempo-real.cidadao.ai"; default: the page's origin. */
  url?: string;
  /** A fixed token; prefer getToken. */
  token?: string | null;
  /** Called at every connect, before expiry (refresh) and after a 1008 close (no new token: no retry). */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** Default: the global WebSocket; in Node 18–21, pass `ws`'s. */
  WebSocket?: WebSocketConstructor | (new (url: string) => unknown);
  fetch?: typeof fetch;
  /** Cursor and offline queue; default sessionStorage, else localStorage, else memory. */
  storage?: KeyValue;
  backoff?: { initialMs?: number; maxMs?: number };
  /** For tests: the jitter's random draw in [0, 1). */
  random?: () => number;
  /** Close cleanly (1000) after the page is hidden this long; reopen on return. Default 5 min. */
  hiddenCloseAfterMs?: number;
  /** Switch to SSE after this many WebSocket attempts in a row that never got the greeting. Default 3. */
  sseAfterFailures?: number;
  transport?: "websocket" | "sse";
  /** Refresh the token this long before it expires. Default 60 s. */
  refreshMarginMs?: number;
  /** Default: half the server's idle_timeout_s. */
  pingIntervalMs?: number | null;
  /** For Page Visibility; default the global document (null: none). */
  document?: { visibilityState: string; addEventListener(type: "visibilitychange", listener: () => void): void } | null;
  /** For online/offline; default the global window (null: none). */
  window?: { addEventListener(type: "online" | "offline", listener: () => void): void } | null;
}

/** Read-only view of a Map of counts (spelled out so that the file checks with any `lib`). */
export interface Counts { get(id: string): number | undefined; has(id: string): boolean; readonly size: number;
  forEach(fn: (count: number, id: string) => void): void; }

export declare class CidadaoRealtime {
  constructor(kind: "chat" | "investigation", id: string, options?: ClientOptions);
  readonly kind: "chat" | "investigation";
  readonly id: string;
  readonly state: ConnectionState;
  readonly detail: StateDetail;
  readonly transport: "websocket" | "sse";
  readonly lastId: string | null;
  readonly pending: Outgoing[];
  /** Presence (§9): watchers per investigation id. */
  readonly watching: Counts;
  /** Presence (§9): open connections of this chat session. */
  readonly connections: number | null;
  readonly duplicatesDropped: number;
  connect(): this;
  close(): void;
  on<K extends keyof ClientEvents>(type: K, handler: (value: ClientEvents[K]) => void): () => void;
  onState(handler: (detail: StateDetail) => void): () => void;
  /** Queued and persisted until the server echoes it; returns its id (a UUID). */
  sendChat(text: string, extra?: { context?: Record<string, unknown> }): string;
  subscribe(investigationId: string): string;
  unsubscribe(investigationId: string): string;
  cancel(replyTo?: string): boolean;
  typing(isTyping: boolean): boolean;
}

export declare function connectChat(sessionId: string, options?: ClientOptions): CidadaoRealtime;
export declare function watchInvestigation(investigationId: string, options?: ClientOptions): CidadaoRealtime;
export declare function backoffDelay(attempt: number, policy: { initialMs: number; maxMs: number }, random?: () => number): number;
export declare function isDurable(id: unknown): id is string;
export declare function parseId(id: string): { epoch: string; offset: number };
export declare class Cursor {
  constructor(storage: KeyValue, key: string);
  lastId: string | null;
  rebase: boolean;
  accept(id: string): { kind: "new" } | { kind: "duplicate" } | { kind: "gap"; expected: number; got: number };
  reset(): void;
}
export declare class OfflineQueue {
  constructor(storage: KeyValue, key: string, limit?: number);
  push(message: Outgoing): boolean;
  ack(id: string): Outgoing | undefined;
  has(id: string): boolean;
  all(): Outgoing[];
  readonly size: number;
}
export declare function uuid(): string;
export declare function eventParser(onEvent: (event: { id: string | null; event: string; data: string }) => void): (chunk: string) => void;
export declare function readEventStream(body: ReadableStream<Uint8Array>,
  onEvent: (event: { id: string | null; event: string; data: string }) => void): Promise<void>;
export declare function memoryStorage(): KeyValue;
export declare function webStorage(web: { getItem(k: string): string | null; setItem(k: string, v: string): void;
  removeItem(k: string): void }): KeyValue;
export declare function defaultStorage(kind?: "session" | "local" | "memory"): KeyValue;
export declare function tokenExpiry(token: string | null | undefined): number | null;
export declare function refreshDelay(expiresAt: number, now: number, marginMs: number): number;
export declare function canonicalJson(value: unknown): string;
export interface Verification { ok: boolean; keyId: string | null; events: number | null; facts: string[]; problems: string[]; }
export declare function verifyReport(report: Record<string, unknown>, jwks: { keys: Array<Record<string, unknown>> }): Promise<Verification>;
