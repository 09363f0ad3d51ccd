// Where the client keeps its cursor and its offline queue: sessionStorage (per tab) or
// localStorage when the page has them, else memory. Private modes that throw on access
// fall back to memory rather than breaking the connection.

/**
 * @typedef {{get(key: string): string | null, set(key: string, value: string): void, remove(key: string): void}} KeyValue
 */

/** @returns {KeyValue} */
export function memoryStorage() {
  /** @type {Map<string, string>} */
  const map = new Map();
  return {
    get: (key) => map.get(key) ?? null,
    set: (key, value) => void map.set(key, value),
    remove: (key) => void map.delete(key),
  };
}

/**
 * Wrap a Web Storage object (``sessionStorage``/``localStorage``) so that failures
 * (quota, private mode) never escape.
 * @param {Storage | {getItem(k: string): string | null, setItem(k: string, v: string): void, removeItem(k: string): void}} web
 * @returns {KeyValue}
 */
export function webStorage(web) {
  const fallback = memoryStorage();
  return {
    get(key) { try { return web.getItem(key) ?? fallback.get(key); } catch { return fallback.get(key); } },
    set(key, value) { try { web.setItem(key, value); } catch { fallback.set(key, value); } },
    remove(key) { try { web.removeItem(key); } catch { /* private mode */ } fallback.remove(key); },
  };
}

/**
 * The best storage this environment offers.
 * @param {"session" | "local" | "memory"} [kind]
 * @returns {KeyValue}
 */
export function defaultStorage(kind = "session") {
  const g = /** @type {any} */ (globalThis);
  try {
    if (kind === "session" && g.sessionStorage) return webStorage(g.sessionStorage);
    if (kind !== "memory" && g.localStorage) return webStorage(g.localStorage);
  } catch { /* access itself may throw (sandboxed iframes) */ }
  return memoryStorage();
}
