// Server-Sent Events over fetch (PROTOCOL §10), not EventSource: fetch can send the
// `Authorization` and `Last-Event-ID` headers, works in Node ≥ 18 as in browsers, and
// lets the client tell an HTTP refusal (401/403/404/429/503 + JSON body) from a drop.

/**
 * Parse a text/event-stream body, calling `onEvent` for each complete event.
 * @param {ReadableStream<Uint8Array>} body
 * @param {(event: {id: string | null, event: string, data: string}) => void} onEvent
 * @returns {Promise<void>} resolves when the stream ends
 */
export async function readEventStream(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = eventParser(onEvent);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parser(decoder.decode(value, { stream: true }));
    }
    parser(decoder.decode());
  } finally {
    reader.releaseLock();
  }
}

/**
 * An incremental parser (exported for tests): feed it text as it arrives.
 * @param {(event: {id: string | null, event: string, data: string}) => void} onEvent
 * @returns {(chunk: string) => void}
 */
export function eventParser(onEvent) {
  let buffer = "";
  /** @type {string[]} */
  let data = [];
  let event = "";
  /** @type {string | null} */
  let id = null;
  return (chunk) => {
    buffer += chunk;
    let cut;
    while ((cut = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, cut);
      buffer = buffer.slice(cut + (buffer.startsWith("\r\n", cut) ? 2 : 1));
      if (line === "") {
        if (data.length) onEvent({ id, event: event || "message", data: data.join("\n") });
        data = []; event = ""; id = null;
        continue;
      }
      if (line.startsWith(":")) continue; // a comment: the `: ping` heartbeat
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "event") event = value;
      else if (field === "id") id = value;
    }
  };
}
