// A real `cidadao-trio serve` for the SDK's tests: started on 127.0.0.1 with a temporary
// data directory (the embedded SQLite store, so history survives a restart), killed on the
// way out. The port is read from the server's first line, as tests/process.py does.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(fileURLToPath(new URL(".", import.meta.url)), "../../..");
const PYTHON = process.env.CIDADAO_PYTHON ?? join(ROOT, ".venv/bin/python");
const LISTENING = /cidadao-trio listening on http:\/\/127\.0\.0\.1:(\d+)\//;

/**
 * @param {Record<string, string>} [settings] CIDADAO_* settings, without the prefix
 * @param {{port?: number, dataDir?: string}} [at] reuse a port and data dir (a restart)
 */
export async function startServer(settings = {}, at = {}) {
  const dataDir = at.dataDir ?? mkdtempSync(join(tmpdir(), "cidadao-js-"));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CIDADAO_")));
  Object.assign(env, { CIDADAO_REPLY_CHUNK_DELAY: "0", CIDADAO_STORE: "sqlite", CIDADAO_DATA_DIR: dataDir });
  for (const [k, v] of Object.entries(settings)) env[`CIDADAO_${k.toUpperCase()}`] = v;
  const child = spawn(PYTHON, ["-m", "cidadao_trio", "serve", "--host", "127.0.0.1", "--port", String(at.port ?? 0)],
    { env, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk) => { stderr += chunk; });
  const port = await new Promise((ok, fail) => {
    let out = "";
    const timer = setTimeout(() => fail(new Error(`server did not start:\n${stderr}`)), 30_000);
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const match = LISTENING.exec(out);
      if (match) { clearTimeout(timer); ok(Number(match[1])); }
    });
    child.on("exit", (code) => { clearTimeout(timer); fail(new Error(`server exited ${code}:\n${stderr}`)); });
  });
  child.stdout.resume();
  return {
    port,
    dataDir,
    url: `http://127.0.0.1:${port}`,
    /** Stop (SIGTERM: drain, close 1001) and wait for the exit. */
    async stop(signal = "SIGTERM") {
      if (child.exitCode !== null) return;
      const gone = new Promise((ok) => child.once("exit", ok));
      child.kill(signal);
      await gone;
    },
    async dispose() {
      await this.stop("SIGKILL");
      if (!at.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Resolve with the first value `on(type)` passes that satisfies `test`, or fail after `ms`. */
export function next(client, type, test = () => true, ms = 10_000) {
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => { off(); fail(new Error(`no ${type} within ${ms} ms (state ${client.state})`)); }, ms);
    const off = client.on(type, (value) => {
      if (!test(value)) return;
      clearTimeout(timer);
      off();
      ok(value);
    });
  });
}
