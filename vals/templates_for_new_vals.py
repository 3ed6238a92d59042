"""The code a new val starts with, one template per val type."""

TEMPLATES = {
    "script": """\
// A script runs when you press Run. Its default export is called with the JSON arguments.
export default function main(name = "world") {
  console.log(`Hello, ${name}!`);
  return { greeting: `Hello, ${name}!`, at: new Date().toISOString() };
}
""",
    "http": """\
// An HTTP val answers web requests on its own origin.
export default async function (req: Request): Promise<Response> {
  const url = new URL(req.url);
  return Response.json({ ok: true, path: url.pathname, method: req.method });
}
""",
    "cron": """\
// A cron val runs on a schedule. It receives the scheduled time and the last run time.
export default async function (interval: { lastRunAt?: string; scheduledAt: string }) {
  console.log("Tick at", interval.scheduledAt, "last run", interval.lastRunAt);
}
""",
    "email": """\
// An email val receives every message sent to its address.
export default async function (email: { from: string; subject: string; text?: string }) {
  console.log(`Mail from ${email.from}: ${email.subject}`);
}
""",
}
