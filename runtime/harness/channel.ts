// The control channel to the host: a unix socket the host listens on.
//
// Why a socket and not stdin/stdout: user code can read stdin and write stdout, so a
// protocol there could be read or forged by the val. The harness connects before any
// user code exists, then revokes the only file permissions the process was started
// with, so the val can never open the socket again. Whatever it writes to stdout is
// just text the host records as raw log lines.
//
// A val can still reach the open socket through Deno's internals and write to it, so
// every message after the job carries the job's nonce, which the val never sees.

import type { GuestMessage, HostMessage, Job } from "./messages.ts";

// Taken before any user code runs, so that a val replacing JSON.stringify or
// TextEncoder.prototype.encode later can't watch the harness's messages go by.
const stringify = JSON.stringify;
const parse = JSON.parse;
const encode = TextEncoder.prototype.encode.bind(new TextEncoder());
const decode = TextDecoder.prototype.decode.bind(new TextDecoder());
// The same for the methods the harness calls on the bytes and text of its frames, which
// carry the nonce: a val that replaced Uint8Array.prototype.subarray saw `this`, a frame,
// go by. Called through these, a val's replacements are never called with a frame.
const apply = Reflect.apply;
const uncurry = <T extends (...args: never[]) => unknown>(method: T) =>
  (self: unknown, ...args: Parameters<T>): ReturnType<T> => apply(method, self, args) as ReturnType<T>;
const subarray = uncurry(Uint8Array.prototype.subarray);
const setBytes = uncurry(Uint8Array.prototype.set);
const sliceBytes = uncurry(Uint8Array.prototype.slice);
const fillBytes = uncurry(Uint8Array.prototype.fill);
const indexOfByte = uncurry(Uint8Array.prototype.indexOf);
const byteLength = uncurry(
  Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), "byteLength")!.get as () => number,
);
const substring = uncurry(String.prototype.substring);
const Bytes = Uint8Array; // a val may replace the global one with a class of its own

const UNENCODABLE_RESULT = stringify({
  type: "result",
  ok: false,
  error: { name: "Error", message: "the harness could not encode the val's outcome", stack: null },
});

interface Pending {
  bytes: Uint8Array;
  next: Pending | null;
}

export class Channel {
  #write: (bytes: Uint8Array) => Promise<number>;
  #read: (buffer: Uint8Array) => Promise<number | null>;
  #nonce: string | null = null;
  #first: Pending | null = null;
  #last: Pending | null = null;
  #pumping = false;
  // What has been read but not yet split into lines. Bytes, not text, so that a UTF-8
  // character split across two reads is decoded whole. It is a view of #readBuffer
  // until the next read, which reuses that buffer (allocating one per read cost more
  // than the rest of a small request's handling, mostly in garbage collection).
  #unread: Uint8Array = new Bytes(0);
  #readBuffer = new Bytes(256 * 1024);

  constructor(conn: Deno.UnixConn) {
    this.#write = conn.write.bind(conn);
    this.#read = conn.read.bind(conn);
  }

  /** Reads the job, the first line the host sends, and keeps its nonce for what follows. */
  async receiveJob(): Promise<Job> {
    const job = await this.receive();
    if (job === null) throw new Error("the host closed the channel before sending a job");
    if (job.type !== "job") throw new Error(`expected a job, got ${job.type}`);
    this.#nonce = job.nonce;
    fillBytes(this.#readBuffer, 0); // the job's bytes, nonce and all, stay nowhere a val could look
    return job as Job;
  }

  /**
   * The next message from the host, or null when it closed the channel. A pending read
   * keeps the process alive, so callers read only while they expect something.
   */
  async receive(): Promise<HostMessage | Job | null> {
    while (true) {
      const end = indexOfByte(this.#unread, 10); // "\n"
      if (end >= 0) {
        const line = subarray(this.#unread, 0, end);
        this.#unread = subarray(this.#unread, end + 1);
        return parse(decode(line));
      }
      // An unfinished line is copied out before the buffer is read into again.
      const unfinished = byteLength(this.#unread) > 0 ? sliceBytes(this.#unread) : null;
      const count = await this.#read(this.#readBuffer);
      if (count === null) return null;
      const fresh = subarray(this.#readBuffer, 0, count);
      if (unfinished === null) {
        this.#unread = fresh;
      } else {
        const joined = new Bytes(byteLength(unfinished) + count);
        setBytes(joined, unfinished);
        setBytes(joined, fresh, byteLength(unfinished));
        this.#unread = joined;
      }
    }
  }

  /**
   * Queues a message. The first write starts at once (Deno polls it eagerly), so a log
   * line reaches the host even if the val then blocks the event loop forever.
   */
  send(message: GuestMessage): void {
    this.#queue(stringify(message));
  }

  /** Queues several messages, to go out in one write. */
  sendAll(messages: GuestMessage[]): void {
    for (const message of messages) this.#append(stringify(message));
    this.#pump();
  }

  /** Queues a message already encoded as one JSON object (hostcalls.ts splices payloads in). */
  sendEncoded(json: string): void {
    this.#queue(json);
  }

  /** The last resort when a result can't be encoded (a val broke JSON for objects). */
  sendUnencodableResult(): void {
    this.#queue(UNENCODABLE_RESULT);
  }

  #queue(frame: string): void {
    this.#append(frame);
    this.#pump();
  }

  #append(frame: string): void {
    if (this.#nonce !== null) {
      // Spliced in as text: no toJSON hook a val defines ever sees the nonce.
      frame = '{"nonce":"' + this.#nonce + '",' + substring(frame, 1);
    }
    const pending: Pending = { bytes: encode(frame + "\n"), next: null };
    if (this.#last === null) this.#first = pending;
    else this.#last.next = pending;
    this.#last = pending;
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#first !== null) {
        // Everything queued by now goes out in one write: under load (many small
        // response chunks and log lines) that saves a system call per message.
        // (Walking the queue twice, not through an array: Array.prototype is the val's.)
        let bytes = this.#first.bytes;
        if (this.#first.next !== null) {
          let size = 0;
          for (let pending: Pending | null = this.#first; pending !== null; pending = pending.next) {
            size += byteLength(pending.bytes);
          }
          bytes = new Bytes(size);
          let offset = 0;
          for (let pending: Pending | null = this.#first; pending !== null; pending = pending.next) {
            setBytes(bytes, pending.bytes, offset);
            offset += byteLength(pending.bytes);
          }
        }
        this.#first = this.#last = null;
        while (byteLength(bytes) > 0) {
          bytes = subarray(bytes, await this.#write(bytes));
        }
      }
    } finally {
      this.#pumping = false;
    }
  }
}

export async function connectToHost(socketPath: string): Promise<Channel> {
  const conn = await Deno.connect({ transport: "unix", path: socketPath });
  // The open connection keeps working after this; only new opens are refused.
  await Deno.permissions.revoke({ name: "read", path: socketPath });
  await Deno.permissions.revoke({ name: "write", path: socketPath });
  for (const name of ["read", "write"] as const) {
    const status = await Deno.permissions.query({ name, path: socketPath });
    if (status.state === "granted") throw new Error(`could not revoke ${name} access to the control socket`);
  }
  return new Channel(conn);
}
