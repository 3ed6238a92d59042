// The messages the host and the harness exchange, one JSON object per line on the
// control socket. runtime/protocol.py is the host's side of the same contract.

export type LogLevel = "log" | "info" | "warn" | "error" | "debug";

/** The one message the host sends: what to evaluate, and for whom. */
export interface Job {
  type: "job";
  /** Secret for this evaluation; every message back must carry it. */
  nonce: string;
  /** A module URL to import, or null when `code` is given. */
  url: string | null;
  /** Inline TypeScript source, or null when `url` is given. */
  code: string | null;
  /** "function": call the named export with `args`. "script": only import the module. */
  mode: "function" | "script";
  export: string;
  args: unknown[];
  /** The evaluation's secrets: the only environment variables the val may see. */
  env: Record<string, string>;
  maxLogBytes: number;
}

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

/** What the harness sends. The channel adds the job's nonce to all but "ready". */
export type GuestMessage =
  | { type: "ready" }
  | { type: "log"; level: LogLevel; message: string; ts: number }
  | { type: "logs_truncated" }
  | { type: "result"; ok: true; value: WireValue }
  | { type: "result"; ok: false; error: ErrorInfo };
