// The guest: runs inside each sandboxed Deno process, serves exactly one job: one
// evaluation, or one HTTP val's requests until the host retires the process.
//
// Order matters: connect to the host and drop file access first, then wait for the
// job, replace the environment and console, and only then load user code.

import { connectToHost } from "./channel.ts";
import { loadTlsRoots, replaceEnvironment } from "./environment.ts";
import { runEvaluation } from "./evaluation.ts";
import { prepareLibraries } from "./library.ts";
import { warmUp } from "./run.ts";

const channel = await connectToHost(Deno.args[0]);
loadTlsRoots();
await warmUp();
channel.send({ type: "ready" });
const job = await channel.receiveJob();

replaceEnvironment(job.env);
await prepareLibraries(job);
if (job.mode === "http") {
  // Loaded only here: http.ts needs node:async_hooks, which costs every process that
  // loads it about 10 ms and 4 MB, and evaluations don't need it.
  const { serveHttp } = await import("./http.ts");
  await serveHttp(channel, job);
} else {
  await runEvaluation(channel, job);
}
