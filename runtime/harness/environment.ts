// The val's environment: exactly the secrets of this evaluation, nothing from the host,
// and none of it in the process's own environment.
//
// Native code inside Deno reads the process's environment long after start-up: WebGPU's
// drivers (Mesa, glvnd) take the path of a library to load from __EGL_VENDOR_LIBRARY_FILENAMES
// when an adapter is asked for, and more such variables exist than any list would hold.
// A val that could set one ran native code of its choosing, outside every permission.
// So once the host's variables are gone, the process's environment is closed to the val
// by Deno's permission (env is revoked), and the val's Deno.env and process.env are a
// view of this evaluation's secrets kept here, which it may read and change as usual.

/** Variables the process keeps, unseen by the val, as native code reads them later. */
const KEPT_FOR_DENO = new Set([
  // No WebGPU backend: requestAdapter() answers null, and no GPU driver is ever loaded.
  "DENO_WEBGPU_BACKEND",
]);

export function replaceEnvironment(secrets: Record<string, string>): void {
  // The process starts with a few variables Deno needs at start-up (DENO_DIR, NO_COLOR).
  // Deno has read them by now, so the val does not need to see them.
  for (const name of Object.keys(Deno.env.toObject())) {
    if (!KEPT_FOR_DENO.has(name)) Deno.env.delete(name);
  }
  Deno.permissions.revokeSync({ name: "env" });
  installVariables(new Map(Object.entries(secrets)));
}

const INVALID_NAME = /^$|[=\0]/;

function checkedName(name: unknown): string {
  const text = String(name);
  if (INVALID_NAME.test(text)) throw new TypeError(`Key is an empty string, or contains "=" or NUL: ${JSON.stringify(text)}`);
  return text;
}

/** Deno.env and process.env, both views of `variables`, as Deno's own are of the process's. */
function installVariables(variables: Map<string, string>): void {
  const env = {
    get: (name: string) => variables.get(checkedName(name)),
    has: (name: string) => variables.has(checkedName(name)),
    set: (name: string, value: string) => {
      const text = String(value);
      if (text.includes("\0")) throw new TypeError("Value contains NUL");
      variables.set(checkedName(name), text);
    },
    delete: (name: string) => {
      variables.delete(checkedName(name));
    },
    toObject: () => Object.fromEntries(variables),
  };
  Object.defineProperty(Deno, "env", { value: env, configurable: true, writable: true });

  const processEnv = new Proxy({} as Record<string, string>, {
    get: (_target, name) => (typeof name === "string" ? variables.get(name) : undefined),
    set: (_target, name, value) => {
      if (typeof name === "string") variables.set(name, String(value));
      return true;
    },
    has: (_target, name) => typeof name === "string" && variables.has(name),
    deleteProperty: (_target, name) => {
      if (typeof name === "string") variables.delete(name);
      return true;
    },
    ownKeys: () => [...variables.keys()],
    getOwnPropertyDescriptor: (_target, name) =>
      typeof name === "string" && variables.has(name)
        ? { value: variables.get(name), writable: true, enumerable: true, configurable: true }
        : undefined,
  });
  const processGlobal = (globalThis as Record<string, unknown>).process as object | undefined;
  if (processGlobal !== undefined) {
    Object.defineProperty(processGlobal, "env", { value: processEnv, configurable: true, writable: true });
  }
}

/**
 * Makes Deno load its TLS root certificates now. It reads DENO_CERT and friends from
 * the environment lazily, on first use, which would be after replaceEnvironment().
 */
export function loadTlsRoots(): void {
  Deno.createHttpClient({}).close();
}
