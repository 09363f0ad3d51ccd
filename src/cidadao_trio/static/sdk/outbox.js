// The offline queue (PROTOCOL §2): every outgoing chat/subscribe/unsubscribe carries a
// unique id and stays queued, persisted, until the server shows it was accepted (the
// `chat {role:"user"}` echo, `subscribed`/`unsubscribed`, or `error DUPLICATE` with its
// reply_to). On every (re)connect the whole queue is resent in order; the ids make the
// resend harmless.

/**
 * @typedef {{type: string, id: string, data: Record<string, unknown>}} Outgoing
 */

/** A random UUID v4, also where `crypto.randomUUID` is missing (insecure contexts, old Node). */
export function uuid() {
  const c = /** @type {any} */ (globalThis).crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c && typeof c.getRandomValues === "function") c.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export class OfflineQueue {
  /**
   * @param {import("./storage.js").KeyValue} storage
   * @param {string} key
   * @param {number} [limit] bounded: the oldest entries are refused past it
   */
  constructor(storage, key, limit = 500) {
    this.storage = storage;
    this.key = key;
    this.limit = limit;
    /** @type {Outgoing[]} */
    this.items = [];
    try {
      const saved = JSON.parse(storage.get(key) ?? "[]");
      if (Array.isArray(saved)) this.items = saved.filter((m) => m && typeof m.id === "string" && typeof m.type === "string");
    } catch { /* a corrupt entry is dropped */ }
  }

  /** @param {Outgoing} message @returns {boolean} false when the queue is full */
  push(message) {
    if (this.items.length >= this.limit) return false;
    this.items.push(message);
    this.#save();
    return true;
  }

  /** @param {string} id @returns {Outgoing | undefined} the acknowledged message */
  ack(id) {
    const at = this.items.findIndex((m) => m.id === id);
    if (at < 0) return undefined;
    const [gone] = this.items.splice(at, 1);
    this.#save();
    return gone;
  }

  /** @param {string} id */
  has(id) { return this.items.some((m) => m.id === id); }

  /** @returns {Outgoing[]} */
  all() { return [...this.items]; }

  get size() { return this.items.length; }

  #save() {
    if (this.items.length) this.storage.set(this.key, JSON.stringify(this.items));
    else this.storage.remove(this.key);
  }
}
