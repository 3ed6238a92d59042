// The platform's api module: `import { api } from "<site>/std/api.ts"`.
// api("bob.lib", ...args) (or "@bob/lib") runs bob's val as bob: a separate evaluation,
// in its own process, with bob's secrets, recorded in bob's tracing log. Arguments and
// the result are JSON. Always async; nesting and fan-out are limited by the platform.

const hostCall = (globalThis as any)[Symbol.for("valtown.host.call")];

export async function api<T = unknown>(val: string, ...args: unknown[]): Promise<T> {
  if (typeof hostCall !== "function") throw new Error("api() only works inside a val run by the platform");
  return await hostCall("api.call", { val, args });
}

export default api;
