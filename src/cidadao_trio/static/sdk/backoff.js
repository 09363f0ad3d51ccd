// Reconnection delays: exponential backoff with "full jitter" (a uniform draw in
// [0, min(cap, base * 2^attempt))), so that thousands of clients dropped by one server
// restart do not come back in the same instant.

/**
 * @param {number} attempt 0 for the first retry
 * @param {{initialMs: number, maxMs: number}} policy
 * @param {() => number} [random] a draw in [0, 1)
 * @returns {number} milliseconds to wait
 */
export function backoffDelay(attempt, policy, random = Math.random) {
  const ceiling = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}
