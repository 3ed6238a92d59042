"""File arguments: {"$file": {"name", "type", "base64"}} in args reaches the val as a
real File (an email's attachments), and anything else stays plain JSON."""

import base64

import pytest

from tests.runtime.helpers import start_engine


@pytest.fixture(scope="module")
def engine():
    engine = start_engine()
    yield engine
    engine.shutdown()


def file_argument(name, content_type, data):
    return {"$file": {"name": name, "type": content_type, "base64": base64.b64encode(data).decode()}}


DESCRIBE_FILE = """
async function describe(file: File) {
  return { isFile: file instanceof File, name: file.name, type: file.type, bytes: [...new Uint8Array(await file.arrayBuffer())] };
}
"""


async def test_a_file_argument_reaches_the_val_as_a_file_with_its_name_type_and_bytes(engine):
    data = bytes([0, 1, 2, 253, 254, 255])

    result = await engine.evaluate(
        DESCRIBE_FILE + "export default (file: File) => describe(file)",
        args=[file_argument("report.pdf", "application/pdf", data)],
    )

    assert result.value == {"isFile": True, "name": "report.pdf", "type": "application/pdf", "bytes": list(data)}


async def test_files_nested_in_objects_and_lists_are_files_too(engine):
    email = {
        "from": "bob@example.com",
        "attachments": [file_argument("a.txt", "text/plain", b"hello"), file_argument("b.bin", "", b"\xff")],
    }

    result = await engine.evaluate(
        DESCRIBE_FILE + "export default (email: any) => Promise.all(email.attachments.map(describe))",
        args=[email],
    )

    assert [(item["name"], item["type"], bytes(item["bytes"])) for item in result.value] == [
        ("a.txt", "text/plain", b"hello"),
        ("b.bin", "", b"\xff"),
    ]


async def test_objects_only_resembling_a_file_stay_plain_json(engine):
    lookalikes = [
        {"$file": {"name": "a.txt", "type": "text/plain"}},  # no bytes
        {"$file": {"name": "a.txt", "type": "text/plain", "base64": "aGk=", "extra": 1}},
        {"$file": {"name": "a.txt", "type": "text/plain", "base64": "aGk="}, "other": 1},
        {"$file": "a.txt"},
    ]

    result = await engine.evaluate(
        "export default (...args: unknown[]) => args.map((arg) => arg instanceof File ? 'file' : arg)",
        args=lookalikes,
    )

    assert result.value == lookalikes
