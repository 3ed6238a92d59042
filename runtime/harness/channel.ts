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
  #unread: Uint8Array = new Uint8Array(0);
  #readBuffer = new Uint8Array(256 * 1024);

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
    return job as Job;
  }

  /**
   * The next message from the host, or null when it closed the channel. A pending read
   * keeps the process alive, so callers read only while they expect something.
   */
  async receive(): Promise<HostMessage | Job | null> {
    while (true) {
      const end = this.#unread.indexOf(10); // "\n"
      if (end >= 0) {
        const line = this.#unread.subarray(0, end);
        this.#unread = this.#unread.subarray(end + 1);
        return parse(decode(line));
      }
      // An unfinished line is copied out before the buffer is read into again.
      const unfinished = this.#unread.byteLength > 0 ? this.#unread.slice() : null;
      const count = await this.#read(this.#readBuffer);
      if (count === null) return null;
      const fresh = this.#readBuffer.subarray(0, count);
      if (unfinished === null) {
        this.#unread = fresh;
      } else {
        const joined = new Uint8Array(unfinished.byteLength + count);
        joined.set(unfinished);
        joined.set(fresh, unfinished.byteLength);
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
      frame = '{"nonce":"' + this.#nonce + '",' + frame.substring(1);
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
        let bytes = this.#first.bytes;
        if (this.#first.next !== null) {
          const parts: Uint8Array[] = [];
          let size = 0;
          for (let pending: Pending | null = this.#first; pending !== null; pending = pending.next) {
            parts.push(pending.bytes);
            size += pending.bytes.byteLength;
          }
          bytes = new Uint8Array(size);
          let offset = 0;
          for (const part of parts) {
            bytes.set(part, offset);
            offset += part.byteLength;
          }
        }
        this.#first = this.#last = null;
        while (bytes.byteLength > 0) {
          bytes = bytes.subarray(await this.#write(bytes));
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
