// The guest: runs inside each sandboxed Deno process, serves exactly one evaluation.
//
// Order matters: connect to the host and drop file access first, then wait for the
// job, replace the environment and console, and only then load user code.

import { connectToHost } from "./channel.ts";
import { captureConsole, endRawOutput } from "./console.ts";
import { loadTlsRoots, replaceEnvironment } from "./environment.ts";
import { describeError } from "./errors.ts";
import type { GuestMessage } from "./messages.ts";
import { runJob, warmUp } from "./run.ts";

const channel = await connectToHost(Deno.args[0]);
loadTlsRoots();
await warmUp();
channel.send({ type: "ready" });
const job = await channel.receiveJob();
const nonce = job.nonce;

replaceEnvironment(job.env);
captureConsole(channel, job.maxLogBytes);

let finished = false;
function finish(message: GuestMessage) {
  // Only the first outcome counts; the host kills the process once it has it.
  if (finished) return;
  finished = true;
  endRawOutput(nonce);
  try {
    channel.send(message);
  } catch {
    channel.sendUnencodableResult();
  }
  channel.waitForTheEnd();
}

// An error thrown from a timer or an unawaited promise ends the evaluation as an error,
// instead of taking the process down with a message on stderr.
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
