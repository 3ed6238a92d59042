"""Load demo data on first start: a demo user and a few example vals."""

from django.core.management.base import BaseCommand

from accounts.models import User
from vals.models import Val

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-password"

EXAMPLES = [
    {
        "name": "hello",
        "type": Val.Type.SCRIPT,
        "readme": "A friendly first val. Press **Run**, or fork it and make it yours.",
        "code": 'export default function hello(name = "world") {\n  console.log("Saying hello to", name);\n  return `Hello, ${name}!`;\n}\n',
    },
    {
        "name": "fibonacci",
        "type": Val.Type.SCRIPT,
        "readme": "Returns the first *n* Fibonacci numbers. Shows how arguments reach a val.",
        "code": "export default function fibonacci(n: number = 10): number[] {\n  const out = [0, 1];\n  while (out.length < n) out.push(out.at(-1)! + out.at(-2)!);\n  return out.slice(0, n);\n}\n",
    },
    {
        "name": "helloWeb",
        "type": Val.Type.HTTP,
        "readme": "An HTTP val: a tiny web page served from its own origin.",
        "code": 'export default async function (req: Request): Promise<Response> {\n  const name = new URL(req.url).searchParams.get("name") ?? "visitor";\n  return new Response(`<h1>Hello, ${name}!</h1>`, {\n    headers: { "content-type": "text/html; charset=utf-8" },\n  });\n}\n',
    },
    {
        "name": "dailyReminder",
        "type": Val.Type.CRON,
        "readme": "A cron val that logs a reminder on every run.",
        "code": 'export default async function (interval) {\n  console.log("Drink some water! Scheduled for", interval.scheduledAt);\n}\n',
    },
    {
        "name": "mailLogger",
        "type": Val.Type.EMAIL,
        "readme": "An email val that logs the subject of every message it receives.",
        "code": "export default async function (email) {\n  console.log(`From ${email.from}: ${email.subject}`);\n}\n",
    },
]


class Command(BaseCommand):
    help = "Create the demo user and example vals, unless they exist already."

    def handle(self, *args, **options):
        demo, created = User.objects.get_or_create(
            username=DEMO_USERNAME,
            defaults={"email": "demo@example.com", "bio": "I show newcomers around. Fork anything!"},
        )
        if created:
            demo.set_password(DEMO_PASSWORD)
            demo.save()
        made = 0
        for example in EXAMPLES:
            if not Val.objects.filter(owner=demo, name__iexact=example["name"]).exists():
                Val.create(owner=demo, **example)
                made += 1
        if created or made:
            self.stdout.write(f"Demo data: user “{DEMO_USERNAME}” (password “{DEMO_PASSWORD}”), {made} example vals.")
        else:
            self.stdout.write("Demo data is already there.")
