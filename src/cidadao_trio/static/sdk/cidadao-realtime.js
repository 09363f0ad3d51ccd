// Cidadão.AI real-time client (PROTOCOL.md): ESM, no build step, no dependency.
// Import it from the server (`/sdk/cidadao-realtime.js`) or from clients/js.

import { CidadaoRealtime } from "./client.js";

export { CidadaoRealtime } from "./client.js";
export { backoffDelay } from "./backoff.js";
export { Cursor, isDurable, parseId } from "./cursor.js";
export { OfflineQueue, uuid } from "./outbox.js";
export { eventParser, readEventStream } from "./sse.js";
export { defaultStorage, memoryStorage, webStorage } from "./storage.js";
export { refreshDelay, tokenExpiry } from "./token.js";
export { canonicalJson, verifyReport } from "./proof.js";

/**
 * Open a chat session's stream (and keep it open).
 * @param {string} sessionId
 * @param {Record<string, any>} [options]
 */
export function connectChat(sessionId, options = {}) {
  return new CidadaoRealtime("chat", sessionId, options).connect();
}

/**
 * Follow one investigation's stream (receive only).
 * @param {string} investigationId
 * @param {Record<string, any>} [options]
 */
export function watchInvestigation(investigationId, options = {}) {
  return new CidadaoRealtime("investigation", investigationId, options).connect();
}
