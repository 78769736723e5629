"""Structured output (issue 14 item 2) through the official `openai` Python
client, every output validated with `jsonschema`.

Run by cli/tests/server.rs (`structured_output_python_client`) against
SmolLM2, which sets OPENAI_BASE_URL and HEARTH_BASE_URL. Short outputs
(max_tokens <= 96, strings bounded by maxLength) keep it fast on the tiny
model; the grammar, not the model, guarantees the shape.
"""

import json
import os
import urllib.error
import urllib.request

import jsonschema
import openai
from pydantic import BaseModel, Field

from checks import check, summary

client = openai.OpenAI(
    base_url=os.environ["OPENAI_BASE_URL"],
    api_key="none",
    max_retries=0,
    timeout=300,
)
BASE = os.environ["HEARTH_BASE_URL"]
MODEL = os.environ["HEARTH_MODEL_ID"]
MAX = 96


def ask(prompt, schema, name, **extra):
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=MAX,
        temperature=0,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": name, "schema": schema, "strict": True},
        },
        **extra,
    )
    return r.choices[0]


def post(path, body):
    req = urllib.request.Request(
        BASE + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def valid(name, text, schema):
    try:
        value = json.loads(text)
        jsonschema.validate(value, schema)
    except (ValueError, jsonschema.ValidationError) as e:
        check(name, False, f"{text!r}: {e}")
    check(name, True)
    return value


def obj(props, required=None):
    return {
        "type": "object",
        "properties": props,
        "required": required if required is not None else list(props),
        "additionalProperties": False,
    }


NAME = {"type": "string", "minLength": 1, "maxLength": 16}

SCHEMAS = {
    "nested objects": (
        "Describe a person with an address as JSON.",
        obj({"name": NAME, "address": obj({"city": NAME, "zip": {"type": "integer", "minimum": 0, "maximum": 99999}})}),
    ),
    "array with minItems and maxItems": (
        "List some colors as JSON.",
        obj({"colors": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 10}, "minItems": 2, "maxItems": 3}}),
    ),
    "enum": (
        "How do you feel today? Answer as JSON.",
        obj({"mood": {"enum": ["happy", "sad", "neutral"]}, "level": {"type": "integer", "enum": [1, 2, 3]}}),
    ),
    "anyOf": (
        "Give me a number or an object as JSON.",
        obj({"value": {"anyOf": [{"type": "integer", "minimum": -5, "maximum": 5}, obj({"flag": {"type": "boolean"}}), {"type": "null"}]}}),
    ),
    "string pattern": (
        "Give a flight code like ABC-12 as JSON.",
        obj({"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"}, "gate": {"type": "string", "pattern": "^[A-F][1-9]$"}}),
    ),
    "numbers with bounds": (
        "Give an age and a score as JSON.",
        obj({
            "age": {"type": "integer", "minimum": 18, "maximum": 99},
            "score": {"type": "number", "minimum": 0.5, "maximum": 2, "maxLength": 6},
            "delta": {"type": "integer", "exclusiveMinimum": -3, "exclusiveMaximum": 3},
        }),
    ),
}

for name, (prompt, schema) in SCHEMAS.items():
    c = ask(prompt, schema, name.replace(" ", "_"))
    check(f"{name}: finish", c.finish_reason == "stop", c)
    valid(f"{name}: valid", c.message.content, schema)

# The same schema streamed: the deltas join into the same valid text.
prompt, schema = SCHEMAS["nested objects"]
whole = ask(prompt, schema, "p").message.content
stream = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": prompt}],
    max_tokens=MAX,
    temperature=0,
    stream=True,
    response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
)
streamed = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
check("streamed equals whole", streamed == whole, (streamed, whole))

# Sampled at temperature 1, several seeds: still always valid.
for seed in range(3):
    prompt, schema = SCHEMAS["array with minItems and maxItems"]
    c = ask(prompt, schema, "colors", seed=seed, extra_body={"temperature": 1.0})
    valid(f"sampled seed {seed}", c.message.content, schema)

# json_object: any object.
r = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "Reply with a JSON object about a dog."}],
    max_tokens=MAX,
    temperature=0,
    response_format={"type": "json_object"},
)
if r.choices[0].finish_reason == "stop":
    v = valid("json_object", r.choices[0].message.content, {"type": "object"})
else:
    # An unbounded object may run past max_tokens; what there is must
    # still start as one.
    check("json_object prefix", r.choices[0].message.content.startswith("{"), r)


# chat.completions.parse with a pydantic model.
class City(BaseModel):
    name: str = Field(max_length=16)
    population: int = Field(ge=0, le=10_000_000)
    capital: bool


parsed = client.chat.completions.parse(
    model=MODEL,
    messages=[{"role": "user", "content": "Tell me about Paris."}],
    max_tokens=MAX,
    temperature=0,
    response_format=City,
)
city = parsed.choices[0].message.parsed
check("parse gives the model", isinstance(city, City), parsed)
check("parse bounds", 0 <= city.population <= 10_000_000 and len(city.name) <= 16, city)

# Text completions take response_format too.
schema = obj({"answer": {"type": "boolean"}})
comp = client.completions.create(
    model=MODEL,
    prompt="Is the sky blue? JSON:",
    max_tokens=MAX,
    temperature=0,
    extra_body={"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}},
)
valid("completion json_schema", comp.choices[0].text, schema)

# llama.cpp's fields: json_schema, and a GBNF grammar.
schema = obj({"ok": {"type": "boolean"}})
c = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "Is water wet?"}],
    max_tokens=32,
    temperature=0,
    extra_body={"json_schema": schema},
)
valid("llama.cpp json_schema", c.choices[0].message.content, schema)
gbnf = 'root ::= answer " " digit digit\nanswer ::= "yes" | "no"\ndigit ::= [0-9]\n'
c = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "Is water wet?"}],
    max_tokens=32,
    temperature=0,
    extra_body={"grammar": gbnf},
)
text = c.choices[0].message.content
check("gbnf", text[:-3] in ("yes", "no") and text[-3] == " " and text[-2:].isdigit(), text)

# A Lark grammar (llama.cpp's `%llguidance` prefix) and vLLM's guided_regex.
for name, extra, ok in (
    ("lark", {"grammar": '%llguidance {}\nstart: ("yes" | "no") "!"'}, lambda t: t in ("yes!", "no!")),
    ("guided_regex", {"guided_regex": "[A-Z][a-z]{2,5} [0-9]{2}"}, lambda t: len(t.split(" ")) == 2 and t.split(" ")[1].isdigit() and t[0].isupper()),
):
    c = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Is water wet?"}],
        max_tokens=32,
        temperature=0,
        extra_body=extra,
    )
    check(name, ok(c.choices[0].message.content) and c.choices[0].finish_reason == "stop", c)

# ollama's format: "json" and a schema.
schema = obj({"animal": NAME, "legs": {"type": "integer", "minimum": 0, "maximum": 8}})
for fmt, sch in (("json", {"type": "object"}), (schema, schema)):
    status, body = post(
        "/api/chat",
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Describe a cat as JSON."}],
            "stream": False,
            "format": fmt,
            "options": {"temperature": 0, "num_predict": MAX},
        },
    )
    check("ollama status", status == 200, body)
    if body.get("done_reason") == "stop" or fmt != "json":
        valid(f"ollama format {'json' if fmt == 'json' else 'schema'}", body["message"]["content"], sch)

# Invalid schemas and grammars: 400 naming the parameter.
bad = [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer", "minimum": 5, "maximum": 1}}}}, "response_format.json_schema.schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "wizard"}}}}, "response_format.json_schema.schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": [1]}}}, "response_format.json_schema.schema"),
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ({"grammar": "root ::= [a-z"}, "grammar"),
    ({"grammar": "rule ::= \"a\""}, "grammar"),
    ({"json_schema": {"type": "object"}, "grammar": "root ::= \"a\""}, "json_schema"),
]
for extra, param in bad:
    try:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=4,
            extra_body=extra,
        )
        check(f"400 for {extra}", False, "no error")
    except openai.BadRequestError as e:
        err = e.body if isinstance(e.body, dict) else {}
        check(f"400 names {param}", err.get("param") == param and param in err.get("message", ""), e.body)
status, body = post("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False, "format": {"type": "integer", "minimum": 3, "maximum": 1}})
check("ollama bad format is 400", status == 400 and "format" in json.dumps(body), body)

summary("structured output")
