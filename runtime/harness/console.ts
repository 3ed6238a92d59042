// Sends what the val logs to the host, line by line, while it runs.

import type { Channel } from "./channel.ts";
import type { LogLevel } from "./messages.ts";
import { cleanText } from "./errors.ts";

/** One line longer than this is cut, so no single message can blow up the channel. */
const MAX_LINE_CHARS = 64 * 1024;
/**
 * What each line costs on top of its text, as on the host (LOG_LINE_OVERHEAD_BYTES in
 * process.py): `console.log("")` in a loop fills the cap too.
 */
const LINE_OVERHEAD = 32;

export function format(args: unknown[]): string {
  return args
    .map((arg) => typeof arg === "string" ? arg : Deno.inspect(arg, { colors: false, depth: 6 }))
    .join(" ");
}

/**
 * The log of one evaluation, or of one HTTP request (`request` is its id). The host
 * enforces the cap too; counting here only saves sending what it would drop.
 */
export class Log {
  #channel: Channel;
  #budget: number;
  #request: number | null;
  #truncated = false;

  constructor(channel: Channel, maxBytes: number, request: number | null = null) {
    this.#channel = channel;
    this.#budget = maxBytes;
    this.#request = request;
  }

  write(level: LogLevel, args: unknown[]): void {
    if (this.#truncated) return;
    let message = cleanText(format(args));
    if (message.length > MAX_LINE_CHARS) message = message.slice(0, MAX_LINE_CHARS) + " …";
    this.#budget -= message.length + LINE_OVERHEAD;
    if (this.#budget < 0) {
      this.#truncated = true;
      this.#channel.send({ type: "logs_truncated", request: this.#request });
      return;
    }
    this.#channel.send({ type: "log", level, message, ts: Date.now(), request: this.#request });
  }
}

/** Sends console output to the log `currentLog()` names when the line is written. */
export function captureConsole(currentLog: () => Log): void {
  const emit = (level: LogLevel, args: unknown[]) => currentLog().write(level, args);
  const levels: LogLevel[] = ["log", "info", "warn", "error", "debug"];
  for (const level of levels) {
    console[level] = (...args: unknown[]) => emit(level, args);
  }
  console.trace = (...args: unknown[]) => emit("debug", [...args, new Error("Trace").stack]);
  console.dir = (value: unknown) => emit("log", [value]);
  console.assert = (condition?: boolean, ...args: unknown[]) => {
    if (!condition) emit("error", ["Assertion failed:", ...args]);
  };
}

// Taken at start-up, before a val could replace them to learn the nonce.
const encode = TextEncoder.prototype.encode.bind(new TextEncoder());
const rawStreams = [Deno.stdout.writeSync.bind(Deno.stdout), Deno.stderr.writeSync.bind(Deno.stderr)];

/**
 * Marks the end of the evaluation's raw stdout and stderr with the job's nonce, so the
 * host knows it has all of it without waiting for the process to die. The val can't
 * know the nonce, so it can't end its output early.
 */
export function endRawOutput(nonce: string): void {
  const marker = encode(nonce + "\n");
  for (const write of rawStreams) {
    try {
      write(marker);
    } catch {
      // The val closed it: the host falls back to waiting for end of file.
    }
  }
}
