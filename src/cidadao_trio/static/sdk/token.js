// When a JWT expires, read from its `exp` claim without verifying it (the server
// verifies): the client only needs to know when to ask getToken() for a fresh one.

/**
 * @param {string | null | undefined} token
 * @returns {number | null} expiry in epoch milliseconds
 */
export function tokenExpiry(token) {
  if (!token) return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = JSON.parse(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)));
    return typeof json.exp === "number" ? json.exp * 1000 : null;
  } catch {
    return null;
  }
}

/**
 * Milliseconds from `now` until a refresh is due: `marginMs` before expiry, or half the
 * remaining life for short-lived tokens; never negative.
 * @param {number} expiresAt epoch ms
 * @param {number} now epoch ms
 * @param {number} marginMs
 */
export function refreshDelay(expiresAt, now, marginMs) {
  const left = expiresAt - now;
  return Math.max(0, left > 2 * marginMs ? left - marginMs : left / 2);
}
