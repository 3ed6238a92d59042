// Host calls: the one way a val asks the platform for something (send an email, store a
// blob, call another val). The host decides, for the evaluation's owner, whether to do
// it; nothing the val says about who it is counts.
//
//   const reply = await globalThis[Symbol.for("valtown.host.call")](name, payload);

import type { Channel } from "./channel.ts";
import { MAX_JSON_DEPTH, nestsTooDeeply } from "./values.ts";

export const HOST_CALL = Symbol.for("valtown.host.call");

/** Who is calling: an evaluation (request null) or one HTTP request. */
export interface Caller {
  request: number | null;
  maxHostCallBytes: number;
  /** Why the evaluation or request is over, once it is: its calls are refused from then on. */
  endedBecause: string | null;
}

interface Pending {
  caller: Caller;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

const MAX_NAME_CHARS = 200;

// Taken at start-up, before a val could replace them.
const stringify = JSON.stringify;
const encoder = new TextEncoder();
const byteLength = (text: string) => encoder.encode(text).byteLength;

export class HostCalls {
  #channel: Channel;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #onFirstPending: () => void;

  /**
   * `onFirstPending` is called when a call starts waiting with none pending before, so
   * the caller can read the replies (and reads only while something is pending).
   */
  constructor(channel: Channel, onFirstPending: () => void = () => {}) {
    this.#channel = channel;
    this.#onFirstPending = onFirstPending;
  }

  get pendingCount(): number {
    return this.#pending.size;
  }

  /** Defines the well-known function. `currentCaller()` says who is calling, or null. */
  install(currentCaller: () => Caller | null): void {
    const call = (name: unknown, payload: unknown): Promise<unknown> => {
      try {
        return this.#start(currentCaller(), name, payload);
      } catch (error) {
        return Promise.reject(error);
      }
    };
    Object.defineProperty(globalThis, HOST_CALL, { value: call, writable: false, configurable: false });
  }

  #start(caller: Caller | null, name: unknown, payload: unknown): Promise<unknown> {
    if (caller === null) throw new Error("host calls can only be made while handling a request");
    if (caller.endedBecause !== null) throw new Error(`host call refused: ${caller.endedBecause}`);
    if (typeof name !== "string" || name.length === 0 || name.length > MAX_NAME_CHARS) {
      throw new TypeError(`a host call needs a name: a string of 1 to ${MAX_NAME_CHARS} characters`);
    }
    let json: string | undefined;
    try {
      json = stringify(payload === undefined ? null : payload);
    } catch (error) {
      throw new TypeError(`the host call payload cannot be converted to JSON: ${(error as Error).message}`);
    }
    if (json === undefined) json = "null"; // a function or symbol: nothing JSON can carry
    if (nestsTooDeeply(json)) {
      throw new TypeError(
        `the host call payload is nested too deeply: more than ${MAX_JSON_DEPTH} levels of arrays and objects`,
      );
    }
    const size = byteLength(json);
    if (size > caller.maxHostCallBytes) {
      throw new RangeError(
        `host call payload too large: ${size} bytes of JSON, the limit is ${caller.maxHostCallBytes}`,
      );
    }
    const id = this.#nextId++;
    // The payload is spliced in as the JSON text it already is: no second encoding,
    // and no toJSON hook runs twice.
    this.#channel.sendEncoded(
      `{"type":"call","id":${id},"request":${caller.request},"name":${stringify(name)},"payload":${json}}`,
    );
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { caller, resolve, reject });
      if (this.#pending.size === 1) this.#onFirstPending();
    });
  }

  /** Settles a call with the host's reply. */
  settle(message: { id: number; ok: boolean; value?: unknown; error?: string }): void {
    const pending = this.#pending.get(message.id);
    if (pending === undefined) return;
    this.#pending.delete(message.id);
    if (message.ok) pending.resolve(message.value);
    else pending.reject(new Error(String(message.error)));
  }

  /** Ends a caller: its pending calls fail now, and its later ones are refused. */
  end(caller: Caller, reason: string): void {
    caller.endedBecause = reason;
    for (const [id, pending] of this.#pending) {
      if (pending.caller !== caller) continue;
      this.#pending.delete(id);
      pending.reject(new Error(`host call refused: ${reason}`));
    }
  }
}
