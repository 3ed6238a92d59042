// The messages the host and the harness exchange, one JSON object per line on the
// control socket. runtime/protocol.py is the host's side of the same contract.

export type LogLevel = "log" | "info" | "warn" | "error" | "debug";

/** The first message the host sends: what to run, and for whom. */
export interface Job {
  type: "job";
  /** Secret for this process; every message back must carry it. */
  nonce: string;
  /** A module URL to import, or null when `code` is given. */
  url: string | null;
  /** Inline TypeScript source, or null when `url` is given. */
  code: string | null;
  /**
   * "function": call the named export with `args`. "script": only import the module.
   * "auto": call the named export if the module has it, else as "script".
   * "http": serve requests with the named export until the host kills the process.
   */
  mode: "function" | "script" | "auto" | "http";
  export: string;
  args: unknown[];
  /** The secrets of the val's owner: the only environment variables the val may see. */
  env: Record<string, string>;
  maxLogBytes: number;
  /** The largest payload of a host call, in bytes of JSON. */
  maxHostCallBytes: number;
  /** HTTP: response bytes the harness may send ahead of the host's credit. */
  responseWindowBytes: number;
  /** Restricted Library Mode (library.ts), or null when the platform has no library host. */
  library: {
    /** The module host by the name that sends no token; the main isolate loses it. */
    host: string;
    workerImportHosts: string[];
    /** Whether to start the Worker: the val imports another user's val. */
    start: boolean;
  } | null;
}

/** HTTP: a visitor's request, the start of an exchange. */
export interface RequestMessage {
  type: "request";
  request: number;
  method: string;
  url: string;
  headers: [string, string][];
  /** Whether `body` messages follow (ended by `body_end`). */
  hasBody: boolean;
  maxLogBytes: number;
  maxHostCallBytes: number;
}

/** Everything the host sends after the job. */
export type HostMessage =
  | RequestMessage
  | { type: "body"; request: number; data: string }
  | { type: "body_end"; request: number }
  | { type: "abort"; request: number; reason: string }
  | { type: "credit"; request: number; bytes: number }
  | { type: "call_result"; id: number; ok: true; value: unknown }
  | { type: "call_result"; id: number; ok: false; error: string };

export interface ErrorInfo {
  name: string;
  message: string;
  stack: string | null;
}

/** A return value, made safe to send as JSON. */
export type WireValue =
  | { kind: "undefined" }
  | { kind: "json"; json: unknown }
  | {
    kind: "response";
    status: number;
    statusText: string;
    headers: [string, string][];
    body: string;
    bodyEncoding: "text" | "base64";
  };

/**
 * What the harness sends. The channel adds the nonce to all but "ready". `request` is
 * the HTTP exchange a message belongs to (null: none, or an evaluation). Host calls
 * ({type: "call", id, request, name, payload}) are built as text by hostcalls.ts.
 */
export type GuestMessage =
  | { type: "ready" }
  | { type: "log"; level: LogLevel; message: string; ts: number; request: number | null }
  | { type: "logs_truncated"; request: number | null }
  | { type: "result"; ok: true; value: WireValue }
  | { type: "result"; ok: false; error: ErrorInfo }
  | { type: "loaded"; ok: true }
  | { type: "loaded"; ok: false; error: ErrorInfo }
  | { type: "head"; request: number; status: number; headers: [string, string][] }
  | { type: "chunk"; request: number; data: string }
  | { type: "end"; request: number }
  | { type: "response"; request: number; status: number; headers: [string, string][]; data: string }
  | { type: "fail"; request: number; error: ErrorInfo };
