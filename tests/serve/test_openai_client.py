"""The official `openai` client against `deepscaler serve`: chat, completions, streaming, n > 1, errors."""

import concurrent.futures

import httpx
import openai
import pytest


@pytest.fixture
def client(served_model):
    return openai.OpenAI(base_url=served_model["base_url"], api_key=served_model["api_key"], max_retries=0)


def test_models_and_health(client, served_model):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert httpx.get(served_model["health"]).json() == {"status": "ok"}


def test_chat_completion(client):
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "What is 2+3?"}],
                                           max_tokens=12, temperature=0.7, seed=5)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert 1 <= reply.usage.completion_tokens <= 12 and reply.usage.prompt_tokens > 5
    again = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "What is 2+3?"}],
                                           max_tokens=12, temperature=0.7, seed=5)
    assert again.choices[0].message.content == choice.message.content  # seeded


def test_completions_with_n_and_logprobs(client):
    reply = client.completions.create(model="tiny", prompt="The answer is", max_tokens=6, n=3, seed=1, logprobs=1)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert len({c.text for c in reply.choices}) > 1  # three different samples
    for choice in reply.choices:
        assert len(choice.logprobs.token_logprobs) == len(choice.logprobs.tokens) <= 6
        assert all(value <= 0 for value in choice.logprobs.token_logprobs)


def test_stop_and_greedy(client):
    greedy = client.completions.create(model="tiny", prompt="1 2 3", max_tokens=10, temperature=0)
    text = greedy.choices[0].text
    assert client.completions.create(model="tiny", prompt="1 2 3", max_tokens=10, temperature=0).choices[0].text == text
    if len(text) > 3:
        cut = client.completions.create(model="tiny", prompt="1 2 3", max_tokens=10, temperature=0, stop=[text[2:4]])
        assert cut.choices[0].text == text[: text.index(text[2:4])] and cut.choices[0].finish_reason == "stop"


def test_streaming_equals_non_streaming(client):
    kwargs = dict(model="tiny", messages=[{"role": "user", "content": "Count"}], max_tokens=16, seed=9)
    whole = client.chat.completions.create(**kwargs).choices[0]
    pieces, finish = [], None
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        delta = chunk.choices[0].delta
        if delta.content:
            pieces.append(delta.content)
        finish = chunk.choices[0].finish_reason or finish
    assert "".join(pieces) == whole.message.content and finish == whole.finish_reason
    assert len(pieces) > 3  # token by token, not one block at the end


def test_bad_requests_get_4xx_and_server_keeps_serving(client, served_model):
    with pytest.raises(openai.BadRequestError, match="top_p"):
        client.completions.create(model="tiny", prompt="x", top_p=1.5)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], temperature=-1)
    with pytest.raises(openai.BadRequestError, match="context"):
        client.completions.create(model="tiny", prompt="word " * 5000, max_tokens=4)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt="x")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=served_model["base_url"], api_key="wrong", max_retries=0).models.list()
    base = served_model["base_url"]
    headers = {"Authorization": "Bearer secret", "Content-Type": "application/json"}
    assert httpx.post(f"{base}/completions", content="{not json", headers=headers).status_code == 400
    assert httpx.post(f"{base}/completions", content="x" * 3_000_000, headers=headers).status_code == 413
    assert client.completions.create(model="tiny", prompt="still here", max_tokens=2).choices


def test_concurrent_requests_all_answered(client):
    def ask(i):
        return client.completions.create(model="tiny", prompt=f"{i} +", max_tokens=8, seed=i).choices[0].text

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(32)))
    assert len(answers) == 32
    assert answers[3] == ask(3)  # batching does not change a seeded answer


def test_waiting_for_a_server_that_exits_or_never_answers_fails_in_one_line():
    import socket
    import subprocess
    import sys

    from deepscaler.inference.remote import RemoteError, wait_until_serving

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        root = f"http://127.0.0.1:{probe.getsockname()[1]}"
    exited = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    exited.wait()
    with pytest.raises(RemoteError, match=r"exited \(code 3\) before it answered"):
        wait_until_serving(root, exited, timeout=30)
    with pytest.raises(RemoteError, match="did not answer 200 within 1 s"):
        wait_until_serving(root, timeout=1)
