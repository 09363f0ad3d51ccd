// Compiled by `tsc --noEmit --strict` only (never run): the declarations fit a typical use.
import { connectChat, type ClientEvents, type StateDetail } from "../index.js";

const chat = connectChat("sessao-1", { url: "http://127.0.0.1:8000", getToken: async () => null });
chat.on("anomaly_detected", (m) => { const severity: "low" | "medium" | "high" | "critical" = m.data.severity; void severity; });
chat.on("chat_complete", (m) => { const actions: string[] = m.data.suggested_actions; void actions; });
chat.on("history_gap", (e) => { const code: string = e.code; void code; });
chat.onState((d: StateDetail) => { if (d.state === "waiting") void d.retryInMs; });
const id: string = chat.sendChat("Olá");
const off: () => void = chat.on("message", (m: ClientEvents["message"]) => void m.id);
off();
void id;
