// Serving an HTTP val: a warm process loads the val once, then handles many requests,
// concurrently, until the host retires it. Every request belongs to the same val,
// version and owner (the host keys warm processes that way).
//
// An exchange, in messages (the host's side is runtime/http.py):
//   host  -> request, body..., body_end      the visitor's request, streamed in
//   guest -> head, chunk..., end | fail      the Response, streamed out as produced
//   host  -> credit                           a chunk has reached the visitor
//   host  -> abort                            visitor gone, timeout, body too large
// The guest sends at most `responseWindowBytes` of chunks ahead of the host's credit,
// so a val streaming to a slow visitor is held back instead of filling memory.
// A response whose whole body is ready at once and fits one chunk (most of them) goes
// as one `response` message instead: head, body and end together.

import { AsyncLocalStorage } from "node:async_hooks";
import type { Channel } from "./channel.ts";
import { captureConsole, Log } from "./console.ts";
import { describeError } from "./errors.ts";
import { type Caller, HostCalls } from "./hostcalls.ts";
import { attributeLibraryCallsWith } from "./library.ts";
import type { ErrorInfo, GuestMessage, HostMessage, Job, RequestMessage } from "./messages.ts";
import { type Handler, loadHandler } from "./run.ts";

/** The largest response chunk in one message; bigger ones are split. */
const CHUNK_BYTES = 64 * 1024;

const encode = TextEncoder.prototype.encode.bind(new TextEncoder());

/** One request being handled. It is also the request's host-call Caller. */
class Exchange implements Caller {
  request: number;
  maxHostCallBytes: number;
  endedBecause: string | null = null;
  log: Log;
  abort = new AbortController();
  body: ReadableStreamDefaultController<Uint8Array> | null = null;
  reader: ReadableStreamDefaultReader<unknown> | null = null;
  /** Response bytes sent that the host has not yet credited back. */
  unacknowledged = 0;
  #creditArrived: (() => void) | null = null;

  constructor(channel: Channel, message: RequestMessage) {
    this.request = message.request;
    this.maxHostCallBytes = message.maxHostCallBytes;
    this.log = new Log(channel, message.maxLogBytes, message.request);
  }

  get finished(): boolean {
    return this.endedBecause !== null;
  }

  /** Resolves once fewer than `window` bytes are waiting for credit, or the exchange ends. */
  waitForCredit(window: number): Promise<void> {
    if (this.unacknowledged < window || this.finished) return Promise.resolve();
    return new Promise((resolve) => this.#creditArrived = resolve);
  }

  credit(bytes: number): void {
    this.unacknowledged -= bytes;
    this.#wake();
  }

  #wake(): void {
    const wake = this.#creditArrived;
    this.#creditArrived = null;
    wake?.();
  }

  /** The visitor is gone, the request timed out or its body was too large. */
  cancel(reason: string): void {
    const error = new DOMException(reason, "AbortError");
    this.abort.abort(error);
    try {
      this.body?.error(error);
    } catch {
      // The body stream was already closed or cancelled.
    }
    this.reader?.cancel(error).catch(() => {});
    this.#wake();
  }
}

const currentExchange = new AsyncLocalStorage<Exchange>();

export async function serveHttp(channel: Channel, job: Job): Promise<void> {
  const strayLog = new Log(channel, job.maxLogBytes);
  // A line logged outside any request (module top level, a bare timer) goes to the
  // host without a request id; the host files it under a request in flight.
  captureConsole(() => currentExchange.getStore()?.log ?? strayLog);
  const hostCalls = new HostCalls(channel);
  hostCalls.install(() => currentExchange.getStore() ?? null);
  attributeLibraryCallsWith(() => {
    const exchange = currentExchange.getStore();
    return (fn) => (exchange === undefined ? fn() : currentExchange.run(exchange, fn));
  });

  // An error thrown from a timer or an unawaited promise must not take down a process
  // that serves other requests: it is logged (to its request, when known) instead.
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    console.error("Uncaught", event.error);
  });
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    console.error("Uncaught (in promise)", event.reason);
  });

  let handler: Handler | null = null;
  try {
    handler = await loadHandler(job);
    channel.send({ type: "loaded", ok: true });
  } catch (error) {
    // The host answers every request with this error and retires the process.
    channel.send({ type: "loaded", ok: false, error: describeError(error) });
  }

  const server = new HttpServer(channel, handler, hostCalls, job.responseWindowBytes);
  while (true) {
    const message = await channel.receive();
    if (message === null) return;
    server.receive(message as HostMessage);
  }
}

class HttpServer {
  #channel: Channel;
  #handler: Handler | null;
  #hostCalls: HostCalls;
  #window: number;
  #exchanges = new Map<number, Exchange>();

  constructor(channel: Channel, handler: Handler | null, hostCalls: HostCalls, window: number) {
    this.#channel = channel;
    this.#handler = handler;
    this.#hostCalls = hostCalls;
    this.#window = window;
  }

  receive(message: HostMessage): void {
    if (message.type === "call_result") {
      this.#hostCalls.settle(message);
      return;
    }
    if (message.type === "request") {
      this.#start(message);
      return;
    }
    const exchange = this.#exchanges.get(message.request);
    if (exchange === undefined) return; // it ended already; the host will see that
    switch (message.type) {
      case "body":
        try {
          exchange.body?.enqueue(Uint8Array.fromBase64(message.data));
        } catch {
          // The handler cancelled the body: the rest is not wanted.
        }
        break;
      case "body_end":
        try {
          exchange.body?.close();
        } catch {
          // Cancelled, as above.
        }
        break;
      case "credit":
        exchange.credit(message.bytes);
        break;
      case "abort":
        this.#finish(exchange, message.reason);
        // In the request's context, so that what the val logs on abort is its own.
        currentExchange.run(exchange, () => exchange.cancel(message.reason));
        // A moment later, so that what the val's abort and cancel handlers log first
        // still reaches the host under this request.
        setTimeout(() => this.#channel.send({ type: "end", request: exchange.request }), 0);
        break;
    }
  }

  #start(message: RequestMessage): void {
    const exchange = new Exchange(this.#channel, message);
    this.#exchanges.set(exchange.request, exchange);
    currentExchange.run(exchange, () => this.#handle(exchange, message));
  }

  async #handle(exchange: Exchange, message: RequestMessage): Promise<void> {
    let response: unknown;
    try {
      if (this.#handler === null) throw new Error("the val failed to load");
      const request = this.#request(exchange, message);
      response = await this.#handler(request);
      if (!(response instanceof Response)) {
        throw new TypeError(`the val's HTTP handler must return a Response, not ${describeType(response)}`);
      }
    } catch (error) {
      this.#fail(exchange, error);
      return;
    }
    if (exchange.finished) return; // aborted while the handler ran
    const head: GuestMessage = {
      type: "head",
      request: exchange.request,
      status: response.status,
      headers: [...response.headers],
    };
    if (response.body === null) {
      this.#whole(exchange, head, null);
      return;
    }
    try {
      await this.#streamBody(exchange, head, response.body.getReader());
    } catch (error) {
      this.#fail(exchange, error);
    }
  }

  #request(exchange: Exchange, message: RequestMessage): Request {
    let body: ReadableStream<Uint8Array> | null = null;
    if (message.hasBody && message.method !== "GET" && message.method !== "HEAD") {
      body = new ReadableStream<Uint8Array>({
        start: (controller) => {
          exchange.body = controller;
        },
        cancel: () => {
          exchange.body = null;
        },
      });
    }
    return new Request(message.url, {
      method: message.method,
      headers: message.headers,
      body,
      signal: exchange.abort.signal,
      // @ts-ignore: Deno needs this for a streamed request body.
      duplex: "half",
    });
  }

  /**
   * Sends the body as it is produced, never more than the window ahead of the host.
   * What is ready at once (all of most bodies) goes out with the head in one write:
   * one wake-up of the host, one send to the visitor.
   */
  async #streamBody(exchange: Exchange, head: GuestMessage, reader: ReadableStreamDefaultReader<unknown>) {
    exchange.reader = reader;
    let frames: GuestMessage[] = [head];
    while (true) {
      const read = reader.read();
      if (frames.length > 0 && !(await settlesAtOnce(read))) {
        this.#channel.sendAll(frames);
        frames = [];
      }
      const { done, value } = await read;
      if (exchange.finished) return;
      if (done) {
        if (frames[0] === head && frames.length <= 2) {
          // Nothing sent yet, and the body fits one chunk: all of it in one message.
          this.#whole(exchange, head, frames.length === 2 ? frames[1] : null);
        } else {
          this.#end(exchange, frames);
        }
        return;
      }
      const bytes = toBytes(value);
      for (let offset = 0; offset < bytes.byteLength; offset += CHUNK_BYTES) {
        const piece = bytes.subarray(offset, offset + CHUNK_BYTES);
        frames.push({ type: "chunk", request: exchange.request, data: piece.toBase64() });
        exchange.unacknowledged += piece.byteLength;
      }
      if (exchange.unacknowledged >= this.#window) {
        this.#channel.sendAll(frames);
        frames = [];
        await exchange.waitForCredit(this.#window);
        if (exchange.finished) return;
      }
    }
  }

  /** The whole response in one message: the head, a body of at most one chunk, the end. */
  #whole(exchange: Exchange, head: GuestMessage, chunk: GuestMessage | null): void {
    if (exchange.finished) return;
    this.#finish(exchange, "the request has ended");
    const { status, headers } = head as { status: number; headers: [string, string][] };
    const data = chunk === null ? "" : (chunk as { data: string }).data;
    this.#channel.send({ type: "response", request: exchange.request, status, headers, data });
  }

  #end(exchange: Exchange, frames: GuestMessage[] = []): void {
    if (exchange.finished) return;
    this.#finish(exchange, "the request has ended");
    this.#channel.sendAll([...frames, { type: "end", request: exchange.request }]);
  }

  #fail(exchange: Exchange, error: unknown): void {
    if (exchange.finished) return;
    const info: ErrorInfo = describeError(error);
    this.#finish(exchange, "the request has ended");
    this.#channel.send({ type: "fail", request: exchange.request, error: info });
  }

  #finish(exchange: Exchange, reason: string): void {
    this.#exchanges.delete(exchange.request);
    this.#hostCalls.end(exchange, reason);
  }
}

const NOT_YET = Symbol("not yet");

/** Whether a promise settles before the event loop's next turn (a body chunk already there). */
async function settlesAtOnce(promise: Promise<unknown>): Promise<boolean> {
  // Most often it settles within a microtask or two (a body given whole, or its end):
  // racing it against a promise settled two microtasks from now tells without a timer.
  const soon = Promise.resolve().then(() => {}).then(() => NOT_YET);
  const first = await Promise.race([promise, soon]).catch(() => null);
  if (first !== NOT_YET) return true;
  return await settlesThisTurn(promise);
}

function settlesThisTurn(promise: Promise<unknown>): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const nextTurn = new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), 0));
  const settled = promise.then(() => true, () => true);
  return Promise.race([settled, nextTurn]).finally(() => clearTimeout(timer));
}

function toBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (typeof chunk === "string") return encode(chunk);
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError(`a response body chunk must be bytes or a string, not ${describeType(chunk)}`);
}

function describeType(value: unknown): string {
  if (value === null) return "null";
  if (typeof value !== "object") return typeof value;
  return value.constructor?.name ?? "an object";
}
