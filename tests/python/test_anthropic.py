"""`hearth serve` through the official `anthropic` Python SDK (Messages).

Run by cli/tests/server.rs (`anthropic_python_client`), which starts the
server with `--api-key` and sets ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY and
HEARTH_MODEL_ID. Plain asserts, no pytest needed; prints one summary line.
"""

import os

import anthropic

from checks import check, summary

BASE = os.environ["ANTHROPIC_BASE_URL"]
KEY = os.environ["ANTHROPIC_API_KEY"]
MODEL = os.environ["HEARTH_MODEL_ID"]
client = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=300)


def expect(name, exc, f):
    try:
        f()
    except exc as e:
        check(name, True)
        return e
    except Exception as e:  # noqa: BLE001 - report what came instead
        check(name, False, f"{type(e).__name__}: {e}")
    check(name, False, "no error")


msgs = [{"role": "user", "content": "Name a fruit."}]
# This SDK's `create` no longer takes `temperature` (Anthropic's newest
# models fix it); the server still reads it, so it goes in `extra_body`.
greedy = {"temperature": 0}
args = dict(model=MODEL, max_tokens=8, messages=msgs, extra_body=greedy)

# Whole: the message object and its usage.
m = client.messages.create(**args)
text = m.content[0].text
check("id", m.id.startswith("msg_"), m.id)
check("type and role", m.type == "message" and m.role == "assistant", m)
check("model", m.model == MODEL, m.model)
check("one text block", len(m.content) == 1 and m.content[0].type == "text" and text, m.content)
check("max_tokens stop_reason", m.stop_reason == "max_tokens" and m.stop_sequence is None, m)
check("output_tokens", m.usage.output_tokens == 8, m.usage)
check("cache_creation", m.usage.cache_creation_input_tokens == 0, m.usage)
n = client.messages.count_tokens(model=MODEL, messages=msgs).input_tokens
check("count_tokens", isinstance(n, int) and n > 3, n)
u = m.usage
check("input + cache read = count_tokens", u.input_tokens + u.cache_read_input_tokens == n, (u, n))

# Streamed: the same text, stop reason and usage.
with client.messages.stream(**args) as s:
    streamed = "".join(s.text_stream)
    final = s.get_final_message()
check("stream text equals whole", streamed == text, (streamed, text))
check("stream final text", final.content[0].text == text, final)
check("stream stop_reason", final.stop_reason == "max_tokens", final)
check("stream output_tokens", final.usage.output_tokens == 8, final.usage)
fu = final.usage
check("stream input + cache read", fu.input_tokens + fu.cache_read_input_tokens == n, fu)
check("stream id", final.id.startswith("msg_") and final.model == MODEL, final)

# A stop sequence: the first word of the whole answer's second half.
word = text.split()[-1] if len(text.split()) > 1 else text[-2:]
cut = text.index(word)
s = client.messages.create(**args, stop_sequences=["zzqx", word])
check("stop_sequence reason", s.stop_reason == "stop_sequence", s)
check("stop_sequence named", s.stop_sequence == word, (s.stop_sequence, word))
check("stop_sequence text cut before it", s.content[0].text == text[:cut], (s.content[0].text, text[:cut]))
with client.messages.stream(**args, stop_sequences=[word]) as st:
    sf = st.get_final_message()
check("stream stop_sequence", sf.stop_reason == "stop_sequence" and sf.stop_sequence == word, sf)

# System as a string and as text blocks give the same prompt and answer.
system = "Answer in one word."
a = client.messages.create(**args, system=system)
b = client.messages.create(**args, system=[{"type": "text", "text": system}])
check("system string == blocks", a.content[0].text == b.content[0].text, (a, b))
na = client.messages.count_tokens(model=MODEL, messages=msgs, system=system).input_tokens
nb = client.messages.count_tokens(
    model=MODEL, messages=msgs, system=[{"type": "text", "text": system}]
).input_tokens
check("system counted", na == nb and na > n, (na, nb, n))
blocks = [{"role": "user", "content": [{"type": "text", "text": "Name a fruit."}]}]
c = client.messages.create(model=MODEL, max_tokens=8, messages=blocks, extra_body=greedy)
check("content blocks == string", c.content[0].text == text, (c, text))

# Errors, in the SDK's classes.
# Another model's name is served by the one model (issue 14 item 5).
other = client.messages.create(**{**args, "model": "claude-no-such"})
check("another model name is served", other.model == MODEL, other)
err = expect(
    "unknown route -> NotFoundError",
    anthropic.NotFoundError,
    lambda: client.post(
        "/v1/messages/batches", body={"model": MODEL, "messages": msgs}, cast_to=anthropic.types.Message
    ),
)
check("not_found_error body", err.body["error"]["type"] == "not_found_error", err.body)
err = expect(
    "missing max_tokens -> BadRequestError",
    anthropic.BadRequestError,
    # The SDK requires max_tokens; the raw post sends the body without it.
    lambda: client.post(
        "/v1/messages", body={"model": MODEL, "messages": msgs}, cast_to=anthropic.types.Message
    ),
)
check("invalid_request_error body", err.body["error"]["type"] == "invalid_request_error", err.body)
check("names max_tokens", "max_tokens" in err.body["error"]["message"], err.body)
err = expect(
    "image block -> BadRequestError",
    anthropic.BadRequestError,
    lambda: client.messages.create(
        model=MODEL,
        max_tokens=4,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}
                ],
            }
        ],
    ),
)
check("names the block type", '"image"' in err.body["error"]["message"], err.body)
err = expect(
    "tools -> BadRequestError",
    anthropic.BadRequestError,
    lambda: client.messages.create(
        **args, tools=[{"name": "f", "input_schema": {"type": "object", "properties": {}}}]
    ),
)
check("says tools are not supported", "tools are not supported yet" in err.body["error"]["message"], err.body)
bad = anthropic.Anthropic(base_url=BASE, api_key="wrong-key", max_retries=0)
err = expect(
    "wrong key -> AuthenticationError",
    anthropic.AuthenticationError,
    lambda: bad.messages.create(**args),
)
check("authentication_error body", err.body["error"]["type"] == "authentication_error", err.body)
expect(
    "wrong key on count_tokens",
    anthropic.AuthenticationError,
    lambda: bad.messages.count_tokens(model=MODEL, messages=msgs),
)

summary("anthropic client")
