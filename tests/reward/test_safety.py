"""The verifier never executes model text, never raises, never runs past its time bound."""

import ast
import os
import threading
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import deepscaler.reward
from deepscaler.reward import is_equivalent, math_reward

ADVERSARIAL = [
    "9^{9^{9^9}}", "10^{100000000}", "1000000!", "(10^{4000})!", "2^{2^{2^{2^{2^{2}}}}}", "\\binom{10^{9}}{5000}",
    "1" * 100_000, "{" * 5000 + "1" + "}" * 5000, "\\frac{1}{2", "}{", "__import__('os').system('touch pwned')",
    "eval('1+1')", "exec(\"open('pwned','w')\")", "lambda: 1", "().__class__.__bases__[0].__subclasses__()",
    "\\sqrt{" * 300 + "2" + "}" * 300, "x^{x^{x^{x^{x^{x^{x^{x}}}}}}}", "e^{e^{e^{e^{10}}}}", "9!!!!!!",
    "\\underbrace{9^9}_{\\text{rm -rf /}}", "\\input{/etc/passwd}", "\\write18{ls}",
]
PIECES = list("0123456789+-*/^_{}()[],.=<>!|\\ xyzeiπ%$") + ["\\frac", "\\sqrt", "\\pi", "\\boxed", "\\infty"]
MATHY = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)


def test_reward_package_never_evaluates_strings():
    """No eval/exec/sympify/parse_expr anywhere in the verifier's source."""
    builtins = {"eval", "exec", "compile", "__import__"}
    sympy_parsers = {"sympify", "parse_expr", "parse_latex", "S"}
    for path in Path(deepscaler.reward.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None)
                attribute = getattr(node.func, "attr", None)
                assert name not in builtins | sympy_parsers, f"{path.name}:{node.lineno} calls {name}"
                assert attribute not in sympy_parsers, f"{path.name}:{node.lineno} calls {attribute}"


def test_adversarial_answers_score_zero_quickly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for answer in ADVERSARIAL:
        start = time.monotonic()
        assert math_reward(f"</think> \\boxed{{{answer}}}", "1", timeout=1.0) == 0.0
        assert is_equivalent(answer, answer[:50], timeout=1.0) is False or len(answer) <= 50
        assert time.monotonic() - start < 2.5, answer[:60]
    assert list(tmp_path.iterdir()) == []


def test_bounded_from_threads():
    """No signal.alarm: the bound holds in threads, where Math-Verify's alarm-based limit does not."""
    results, durations = [], []

    def work(given):
        start = time.monotonic()
        results.append(is_equivalent(given, "\\sqrt{2}\\sin(1 + \\pi/4)", timeout=0.5))
        durations.append(time.monotonic() - start)

    threads = [threading.Thread(target=work, args=(g,)) for g in ["\\sin 1 + \\cos 1", "x^{x^{x^{x}}}"] * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False, False, True, True]
    assert max(durations) < 0.5 + 10  # the time limit plus, at most, one cold worker start


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(response=MATHY, gold=MATHY)
def test_random_text_never_raises(response, gold):
    before = set(os.listdir("."))
    start = time.monotonic()
    reward = math_reward(f"</think> \\boxed{{{response}}}", gold, timeout=0.5)
    assert reward in (0.0, 1.0)
    assert time.monotonic() - start < 0.5 + 10
    assert set(os.listdir(".")) == before


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_unicode_never_raises(text):
    assert math_reward(text, text) in (0.0, 1.0)
    assert is_equivalent(text, "1") in (True, False)
