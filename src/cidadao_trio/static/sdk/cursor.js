// Durable ids are "<epoch>-<offset>" (PROTOCOL §4): the offset grows by exactly 1 per
// message of a stream, so a client sees duplicates (offset already seen) and gaps
// (offset skipped). Ephemeral ids start with "e-" and are never tracked.

/** @param {unknown} id */
export function isDurable(id) {
  return typeof id === "string" && !id.startsWith("e-") && /^.+-\d+$/.test(id);
}

/**
 * @param {string} id
 * @returns {{epoch: string, offset: number}}
 */
export function parseId(id) {
  const cut = id.lastIndexOf("-");
  return { epoch: id.slice(0, cut), offset: Number(id.slice(cut + 1)) };
}

/**
 * The last durable id a client has seen on one stream, persisted so that a reload or a
 * new tab resumes where the page left off.
 */
export class Cursor {
  /**
   * @param {import("./storage.js").KeyValue} storage
   * @param {string} key
   */
  constructor(storage, key) {
    this.storage = storage;
    this.key = key;
    /** @type {string | null} */
    this.lastId = storage.get(key);
    if (this.lastId !== null && !isDurable(this.lastId)) this.lastId = null;
    /** After HISTORY_GAP the next durable id starts a new baseline (no gap reported). */
    this.rebase = false;
  }

  /**
   * Classify a durable id against the cursor, and move the cursor forward when new.
   * @param {string} id
   * @returns {{kind: "new"} | {kind: "duplicate"} | {kind: "gap", expected: number, got: number}}
   */
  accept(id) {
    const next = parseId(id);
    if (this.lastId === null || this.rebase) {
      this.rebase = false;
      this.#move(id);
      return { kind: "new" };
    }
    const last = parseId(this.lastId);
    if (next.epoch !== last.epoch) {
      this.#move(id);
      return { kind: "new" };
    }
    if (next.offset <= last.offset) return { kind: "duplicate" };
    this.#move(id);
    if (next.offset > last.offset + 1) return { kind: "gap", expected: last.offset + 1, got: next.offset };
    return { kind: "new" };
  }

  /** @param {string} id */
  #move(id) {
    this.lastId = id;
    this.storage.set(this.key, id);
  }

  reset() {
    this.lastId = null;
    this.storage.remove(this.key);
  }
}
