// Restricted Library Mode: another user's val, imported by this one, runs in a Worker.
//
// The module host never gives the main isolate another user's code. When this val
// imports `/v/bob/lib.ts`, the host answers with a small stub instead:
//
//   const lib = await globalThis[Symbol.for("valtown.library")]("<library url of bob/lib>", ["default", "greet"]);
//   export default lib["default"];
//   export const greet = lib["greet"];
//
// The loader below imports the real module inside a Worker that has no environment
// (so no secrets), no files, and may import only from the library host (where no
// import token is sent, so only public code is served) and the CDNs. Exported
// functions become async proxies: arguments and return values cross by structured
// clone. The Worker's console lines come back here, so they land in this evaluation,
// and so do its host calls, each sent on with its name prefixed "library:" (see
// LIBRARY_CALL_PREFIX): the host authorises those as nobody, whoever the evaluation
// runs for. Nothing in the Worker can send a call without the prefix, and the val's
// own code adding one only gives up its principal's authority.
//
// The boundary is the isolate and Deno's permissions, not anything in this file: the
// Worker's own code could undo every convenience below and still not reach this
// isolate's globals or environment.

import { HOST_CALL } from "./hostcalls.ts";
import type { Job } from "./messages.ts";

export const LIBRARY_LOADER = Symbol.for("valtown.library");

/** What the host sees in front of the name of a host call made by another user's code. */
export const LIBRARY_CALL_PREFIX = "library:";

type ExportDescription =
  | { kind: "function" }
  | { kind: "value"; value: unknown }
  | { kind: "uncloneable"; reason: string };

type FromWorker =
  | { type: "loaded"; id: number; exports: Record<string, ExportDescription> }
  | { type: "returned"; id: number; value: unknown }
  | { type: "threw"; id: number; error: { name: string; message: string; stack: string | null } }
  | { type: "log"; level: "log" | "info" | "warn" | "error" | "debug"; text: string }
  | { type: "hostcall"; id: number; name: string; payload: unknown; call: number | null };

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

/** Runs fn in the context of whoever was calling when the context was captured. */
type Enter = <T>(fn: () => T) => T;

// What the Worker's host calls are attributed to: an evaluation has one caller all
// along; an HTTP val's process serves many requests at once, and http.ts replaces this
// so that a call is made for the request whose call into the library made it.
let captureCallerContext: () => Enter = () => (fn) => fn();

export function attributeLibraryCallsWith(capture: () => Enter): void {
  captureCallerContext = capture;
}

/**
 * Starts the Worker if the job asks for one, then takes the library host away from
 * this isolate: from here on it can import other users' vals only through stubs.
 */
export async function prepareLibraries(job: Job): Promise<void> {
  const library = job.library;
  let worker: Worker | null = null;
  if (library !== null && library.start) {
    const options = JSON.stringify({ attributeCalls: job.mode === "http" });
    worker = new Worker(`data:application/javascript,${encodeURIComponent(`(${libraryWorkerMain.toString()})(${options})`)}`, {
      type: "module",
      name: "restricted-library",
      deno: {
        permissions: {
          env: false,
          import: library.workerImportHosts,
          net: "inherit",
          read: false,
          write: false,
          run: false,
          ffi: false,
          sys: false,
        },
      },
    });
  }
  if (library !== null) {
    await Deno.permissions.revoke({ name: "import", host: library.host });
  }
  const loader = worker === null ? refuseLibraries : libraryLoader(worker);
  Object.defineProperty(globalThis, LIBRARY_LOADER, { value: loader, writable: false, configurable: false });
}

function refuseLibraries(url: string): Promise<never> {
  return Promise.reject(
    new Error(
      `${url} belongs to another user, so it must run in Restricted Library Mode, which this evaluation ` +
        `did not start: import other users' vals with a literal import (import ... from "/v/user/val.ts").`,
    ),
  );
}

function libraryLoader(worker: Worker) {
  const pending = new Map<number, Pending>();
  // The caller of each call into the library still running, by the call's id: the
  // Worker names it in the host calls the call makes.
  const callers = new Map<number, Enter>();
  let nextId = 1;

  function ask(message: Record<string, unknown>): Promise<unknown> {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      const forget = () => callers.delete(id);
      pending.set(id, { resolve: (value) => (forget(), resolve(value)), reject: (error) => (forget(), reject(error)) });
      callers.set(id, captureCallerContext());
      try {
        worker.postMessage({ ...message, id });
      } catch (error) {
        pending.delete(id);
        callers.delete(id);
        reject(
          new TypeError(
            `a value can't be passed to another user's val: only structured-cloneable values (no functions, ` +
              `class instances keep only their data) cross into Restricted Library Mode (${(error as Error).message})`,
          ),
        );
      }
    });
  }

  worker.onmessage = (event: MessageEvent<FromWorker>) => {
    const message = event.data;
    if (message.type === "log") {
      console[message.level](message.text);
    } else if (message.type === "hostcall") {
      // A call the Worker doesn't attribute to a call into it (its modules' top level,
      // a timer of its own) is made outside any request: refused in an HTTP val.
      const enter = (message.call !== null && callers.get(message.call)) || captureCallerContext();
      enter(() => answerHostCall(worker, message));
    } else {
      const waiting = pending.get(message.id);
      if (waiting === undefined) return;
      pending.delete(message.id);
      if (message.type === "threw") waiting.reject(rebuiltError(message.error));
      else if (message.type === "loaded") waiting.resolve(message.exports);
      else waiting.resolve(message.value);
    }
  };
  worker.onerror = (event) => {
    event.preventDefault();
    const error = new Error(`another user's val crashed its Restricted Library Mode worker: ${event.message}`);
    for (const waiting of pending.values()) waiting.reject(error);
    pending.clear();
  };

  return async (url: string, names: string[]): Promise<Record<string, unknown>> => {
    const exports = (await ask({ type: "load", url })) as Record<string, ExportDescription>;
    const namespace: Record<string, unknown> = {};
    for (const name of names) {
      const description = exports[name];
      if (description === undefined) continue;
      if (description.kind === "function") {
        namespace[name] = (...args: unknown[]) => ask({ type: "call", url, name, args });
      } else if (description.kind === "value") {
        namespace[name] = description.value;
      } else {
        console.warn(`${url}: its export "${name}" can't cross into Restricted Library Mode: ${description.reason}`);
      }
    }
    return namespace;
  };
}

function answerHostCall(worker: Worker, message: { id: number; name: unknown; payload: unknown }): void {
  const reply = (result: { ok: true; value: unknown } | { ok: false; error: string }) =>
    worker.postMessage({ type: "hostcall_result", id: message.id, ...result });
  const hostCall = (globalThis as Record<symbol, unknown>)[HOST_CALL] as (name: string, payload: unknown) => Promise<unknown>;
  hostCall(LIBRARY_CALL_PREFIX + String(message.name), message.payload).then(
    (value) => reply({ ok: true, value }),
    (error) => reply({ ok: false, error: (error as Error).message }),
  );
}

function rebuiltError(info: { name: string; message: string; stack: string | null }): Error {
  const error = new Error(info.message);
  error.name = info.name;
  if (info.stack) error.stack = info.stack;
  return error;
}

/**
 * The Worker's whole program, started from its source text (a Worker can't read the
 * harness's files). It must not refer to anything outside itself.
 */
function libraryWorkerMain(options: { attributeCalls: boolean }) {
  const post = (message: unknown) => (self as unknown as Worker).postMessage(message);
  // Which call into the library is running, through its awaits, so that its host calls
  // name it: an HTTP val's requests call into the library at the same time.
  let currentCall: { getStore(): number | undefined; run<T>(call: number, fn: () => T): T } = {
    getStore: () => undefined,
    run: (_call, fn) => fn(),
  };
  const ready = options.attributeCalls
    ? import("node:async_hooks").then((hooks) => {
      currentCall = new hooks.AsyncLocalStorage<number>();
    })
    : Promise.resolve();
  const inspect = Deno.inspect;
  const modules = new Map<string, Record<string, unknown>>();
  const hostCalls = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  let nextHostCall = 1;

  // No environment: the permission refuses it. Reads give undefined rather than an
  // error, as for a variable nobody set.
  const noVariables = {
    get: (_name: string) => undefined,
    has: (_name: string) => false,
    toObject: () => ({}),
    set: (name: string) => {
      throw new Error(`Deno.env.set("${name}"): another user's val has no environment (Restricted Library Mode)`);
    },
    delete: (_name: string) => {},
  };
  Object.defineProperty(Deno, "env", { value: noVariables, configurable: true });
  const processGlobal = (globalThis as Record<string, unknown>).process as { env?: unknown } | undefined;
  if (processGlobal !== undefined) {
    Object.defineProperty(processGlobal, "env", { value: {}, configurable: true, writable: true });
  }

  for (const level of ["log", "info", "warn", "error", "debug"] as const) {
    console[level] = (...parts: unknown[]) =>
      post({ type: "log", level, text: parts.map((part) => typeof part === "string" ? part : inspect(part)).join(" ") });
  }

  Object.defineProperty(globalThis, Symbol.for("valtown.host.call"), {
    value: (name: string, payload: unknown) =>
      new Promise((resolve, reject) => {
        const id = nextHostCall++;
        hostCalls.set(id, { resolve, reject });
        post({ type: "hostcall", id, name, payload, call: currentCall.getStore() ?? null });
      }),
  });

  function describe(error: unknown) {
    if (error instanceof Error) return { name: error.name, message: error.message, stack: error.stack ?? null };
    return { name: "Error", message: typeof error === "string" ? error : inspect(error), stack: null };
  }

  function describeExport(value: unknown) {
    if (typeof value === "function") return { kind: "function" };
    try {
      return { kind: "value", value: structuredClone(value) };
    } catch (error) {
      return { kind: "uncloneable", reason: (error as Error).message };
    }
  }

  self.onmessage = async (event: MessageEvent) => {
    await ready;
    const message = event.data;
    if (message.type === "hostcall_result") {
      const waiting = hostCalls.get(message.id);
      if (waiting === undefined) return;
      hostCalls.delete(message.id);
      if (message.ok) waiting.resolve(message.value);
      else waiting.reject(new Error(message.error));
      return;
    }
    try {
      if (message.type === "load") {
        let module = modules.get(message.url);
        if (module === undefined) {
          module = await import(message.url) as Record<string, unknown>;
          modules.set(message.url, module);
        }
        const exports: Record<string, unknown> = {};
        for (const [name, value] of Object.entries(module)) exports[name] = describeExport(value);
        post({ type: "loaded", id: message.id, exports });
      } else if (message.type === "call") {
        const target = modules.get(message.url)?.[message.name];
        if (typeof target !== "function") throw new TypeError(`${message.name} is not a function`);
        const value = await currentCall.run(message.id, () => target(...message.args));
        try {
          post({ type: "returned", id: message.id, value });
        } catch (error) {
          throw new TypeError(
            `${message.name}() returned a value that can't cross back from Restricted Library Mode: ` +
              `only structured-cloneable values do (no functions, Responses or class instances' methods). ` +
              `(${(error as Error).message})`,
          );
        }
      }
    } catch (error) {
      post({ type: "threw", id: message.id, error: describe(error) });
    }
  };
}
