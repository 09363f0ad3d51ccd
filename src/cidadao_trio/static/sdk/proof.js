// Checking a finished investigation's proof (PROTOCOL §11) in the browser or Node, with
// WebCrypto only: the Ed25519 signature over the proof, made by a key the server lists at
// /api/v1/keys, and the Markdown report's SHA-256. The hash chain over every event and the
// JSON members' hash are left to `cidadao-trio verify` (Python's float formatting, which
// canonical() uses, is not what JavaScript's JSON gives back).

/**
 * Python's json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
 * for the values a proof holds (strings, integers, null, nested objects and arrays).
 * @param {unknown} value
 * @returns {string}
 */
export function canonicalJson(value) {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isInteger(value)) throw new TypeError("floats are not canonicalised here");
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const record = /** @type {Record<string, unknown>} */ (value);
  const keys = Object.keys(record).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(record[k])}`).join(",")}}`;
}

/** @param {string} text */
function base64Bytes(text) {
  const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** @param {ArrayBuffer} buffer */
function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * @param {Record<string, any>} report the JSON report (`?format=json`)
 * @param {{keys: Array<Record<string, any>>}} jwks what GET /api/v1/keys answers
 * @returns {Promise<{ok: boolean, keyId: string | null, events: number | null, facts: string[], problems: string[]}>}
 *   facts and problems in Portuguese, for the person reading the report
 */
export async function verifyReport(report, jwks) {
  const subtle = /** @type {any} */ (globalThis).crypto?.subtle;
  /** @type {string[]} */
  const facts = [];
  /** @type {string[]} */
  const problems = [];
  const proof = report && typeof report === "object" ? report.proof : null;
  const investigationId = report?.investigation_id;
  if (!proof || typeof proof !== "object") {
    return { ok: false, keyId: null, events: null, facts, problems: ["O relatório não traz prova (campo proof)."] };
  }
  const keyId = typeof proof.key_id === "string" ? proof.key_id : null;
  const events = typeof proof.events === "number" ? proof.events : null;
  if (!subtle) problems.push("Este navegador não oferece WebCrypto (crypto.subtle) para conferir a assinatura.");
  const jwk = (jwks?.keys ?? []).find((k) => k.kid === keyId && k.kty === "OKP" && k.crv === "Ed25519");
  if (!jwk) problems.push(`A chave ${keyId ?? "?"} que assinou o relatório não está entre as chaves deste servidor.`);
  if (subtle && jwk && typeof investigationId === "string") {
    try {
      const key = await subtle.importKey("jwk", { kty: "OKP", crv: "Ed25519", x: jwk.x }, { name: "Ed25519" }, false, ["verify"]);
      const { signature, ...fields } = proof;
      const signed = new TextEncoder().encode(canonicalJson({ ...fields, investigation_id: investigationId }));
      const valid = await subtle.verify({ name: "Ed25519" }, key, base64Bytes(String(signature ?? "")), signed);
      if (valid) facts.push(`Assinatura Ed25519 válida (chave ${keyId}).`);
      else problems.push(`A assinatura não confere com a chave ${keyId}: a prova foi alterada.`);
    } catch (error) {
      problems.push(`Não foi possível conferir a assinatura neste navegador (${String(/** @type {any} */ (error)?.name ?? error)}).`);
    }
  }
  if (subtle && typeof report.markdown === "string") {
    const digest = hex(await subtle.digest("SHA-256", new TextEncoder().encode(report.markdown)));
    if (digest === proof.report_sha256) facts.push(`Texto do relatório íntegro (SHA-256 ${digest.slice(0, 12)}…).`);
    else problems.push("O texto do relatório não corresponde ao hash assinado: foi alterado.");
  }
  if (events !== null) facts.push(`Cadeia de ${events} eventos.`);
  return { ok: problems.length === 0 && facts.length > 0, keyId, events, facts, problems };
}
