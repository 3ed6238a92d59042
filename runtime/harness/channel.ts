// The control channel to the host: a unix socket the host listens on.
//
// Why a socket and not stdin/stdout: user code can read stdin and write stdout, so a
// protocol there could be read or forged by the val. The harness connects before any
// user code exists, then revokes the only file permissions the process was started
// with, so the val can never open the socket again. Whatever it writes to stdout is
// just text the host records as raw log lines.

import type { GuestMessage, Job } from "./messages.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class Channel {
  #conn: Deno.UnixConn;
  #queue: Uint8Array[] = [];
  #pumping = false;

  constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
  }

  /** Reads the single job line the host sends. */
  async receiveJob(): Promise<Job> {
    let text = "";
    const buffer = new Uint8Array(64 * 1024);
    while (!text.includes("\n")) {
      const count = await this.#conn.read(buffer);
      if (count === null) throw new Error("the host closed the channel before sending a job");
      text += decoder.decode(buffer.subarray(0, count), { stream: true });
    }
    const job = JSON.parse(text.slice(0, text.indexOf("\n")));
    if (job.type !== "job") throw new Error(`expected a job, got ${job.type}`);
    return job as Job;
  }

  /**
   * Queues a message. The first write starts at once (Deno polls it eagerly), so a log
   * line reaches the host even if the val then blocks the event loop forever.
   */
  send(message: GuestMessage): Promise<void> {
    this.#queue.push(encoder.encode(JSON.stringify(message) + "\n"));
    return this.#pump();
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#queue.length > 0) {
        let chunk = this.#queue[0];
        while (chunk.length > 0) {
          const written = await this.#conn.write(chunk);
          chunk = chunk.subarray(written);
        }
        this.#queue.shift();
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
