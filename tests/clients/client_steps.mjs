// Shared by the Node.js client tests: loading a client package from
// tests/clients/node_modules, and a deadline on every step.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

// The package, or a clear failure naming the fix (never a silent pass).
export function load(pkg, name) {
  try {
    return require(pkg);
  } catch (e) {
    console.error(`${name} is missing: run scripts/install-deps.sh (npm ci in tests/clients)`);
    process.exit(1);
  }
}

export const stepTimeoutMs = 10_000;

// A step that does not settle fails the test instead of hanging it.
export function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${stepTimeoutMs} ms`)), stepTimeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
