// An evaluation: run the val once, send its outcome, and wait for the host to kill the
// process.

import type { Channel } from "./channel.ts";
import { captureConsole, endRawOutput, Log } from "./console.ts";
import { describeError } from "./errors.ts";
import { type Caller, HostCalls } from "./hostcalls.ts";
import type { GuestMessage, Job } from "./messages.ts";
import { runJob } from "./run.ts";

export async function runEvaluation(channel: Channel, job: Job): Promise<void> {
  const log = new Log(channel, job.maxLogBytes);
  captureConsole(() => log);

  // The host's messages are read only while a host call waits for its reply (and, at
  // the end, to keep the process alive): a pending read would keep Deno running, and
  // it could no longer tell that a val's promise can never settle.
  let reading = false;
  let readUntilTheEnd = false;
  function read() {
    if (reading) return;
    reading = true;
    (async () => {
      while (readUntilTheEnd || hostCalls.pendingCount > 0) {
        const message = await channel.receive();
        if (message === null) break;
        if (message.type === "call_result") hostCalls.settle(message);
      }
      reading = false;
    })();
  }

  const caller: Caller = { request: null, maxHostCallBytes: job.maxHostCallBytes, endedBecause: null };
  const hostCalls = new HostCalls(channel, read);
  hostCalls.install(() => caller);

  let finished = false;
  function finish(message: GuestMessage) {
    // Only the first outcome counts; the host kills the process once it has it.
    if (finished) return;
    finished = true;
    hostCalls.end(caller, "the evaluation has ended");
    endRawOutput(job.nonce);
    try {
      channel.send(message);
    } catch {
      channel.sendUnencodableResult();
    }
    // Keeps the process alive until the host kills it, so it doesn't exit by itself
    // while the host is still reading its memory figures.
    readUntilTheEnd = true;
    read();
  }

  // An error thrown from a timer or an unawaited promise ends the evaluation as an
  // error, instead of taking the process down with a message on stderr.
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    finish({ type: "result", ok: false, error: describeError(event.error) });
  });
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    finish({ type: "result", ok: false, error: describeError(event.reason) });
  });

  try {
    const value = await runJob(job);
    finish({ type: "result", ok: true, value });
  } catch (error) {
    finish({ type: "result", ok: false, error: describeError(error) });
  }
}
