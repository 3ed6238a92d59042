// The guest: runs inside each sandboxed Deno process, serves exactly one evaluation.
//
// Order matters: connect to the host and drop file access first, then wait for the
// job, replace the environment and console, and only then load user code.

import { connectToHost } from "./channel.ts";
import { captureConsole } from "./console.ts";
import { loadTlsRoots, replaceEnvironment } from "./environment.ts";
import { describeError } from "./errors.ts";
import type { GuestMessage } from "./messages.ts";
import { runJob } from "./run.ts";

const channel = await connectToHost(Deno.args[0]);
loadTlsRoots();
channel.send({ type: "ready" });
const job = await channel.receiveJob();
const nonce = job.nonce;

replaceEnvironment(job.env);
captureConsole(channel, nonce, job.maxLogBytes);

let finished = false;
function finish(message: GuestMessage) {
  // Only the first outcome counts; the host kills the process once it has it.
  if (finished) return;
  finished = true;
  channel.send(message);
}

// An error thrown from a timer or an unawaited promise ends the evaluation as an error,
// instead of taking the process down with a message on stderr.
globalThis.addEventListener("error", (event) => {
  event.preventDefault();
  finish({ type: "result", nonce, ok: false, error: describeError(event.error) });
});
globalThis.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  finish({ type: "result", nonce, ok: false, error: describeError(event.reason) });
});

try {
  const value = await runJob(job);
  finish({ type: "result", nonce, ok: true, value });
} catch (error) {
  finish({ type: "result", nonce, ok: false, error: describeError(error) });
}
