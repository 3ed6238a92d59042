// The val's environment: exactly the secrets of this evaluation, nothing from the host.

export function replaceEnvironment(secrets: Record<string, string>): void {
  // The process starts with a few variables Deno needs at start-up (DENO_DIR, NO_COLOR).
  // Deno has read them by now, so the val does not need to see them.
  for (const name of Object.keys(Deno.env.toObject())) {
    Deno.env.delete(name);
  }
  for (const [name, value] of Object.entries(secrets)) {
    Deno.env.set(name, value);
  }
}

/**
 * Makes Deno load its TLS root certificates now. It reads DENO_CERT and friends from
 * the environment lazily, on first use, which would be after replaceEnvironment().
 */
export function loadTlsRoots(): void {
  Deno.createHttpClient({}).close();
}
