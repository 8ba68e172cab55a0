"""`deepscaler chat`: talk to a model in the terminal; tokens stream as they come, the <think> part dimmed."""

from __future__ import annotations

import argparse
import inspect
import sys

from deepscaler.cli import MODEL_HELP, REVISION_HELP, THREADS_HELP, UsageError, threads_option
from deepscaler.cli.quiet import VERBOSE_HELP, quiet_libraries


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--revision", help=REVISION_HELP)
    parser.add_argument("--engine", choices=("auto", "builtin", "vllm"), default="auto")
    parser.add_argument("--threads", type=threads_option, default="auto", help=THREADS_HELP)
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--system", help="a system message")
    parser.add_argument("--hide-thinking", action="store_true", help="fold the <think> section to one line")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)


class ThinkPrinter:
    """Prints streamed text, dimming (or folding) what lies between <think> and </think>."""

    def __init__(self, console, hide: bool) -> None:
        self.console, self.hide, self.thinking, self.pending = console, hide, False, ""

    def feed(self, piece: str) -> None:
        text = self.pending + piece
        self.pending = ""
        while text:
            tag = "</think>" if self.thinking else "<think>"
            at = text.find(tag)
            if at < 0:
                keep = _partial_tag_suffix(text, tag)  # "<thi" may be the start of a tag: wait for more
                self._emit(text[: len(text) - keep])
                self.pending = text[len(text) - keep :]
                return
            self._emit(text[:at])
            self._emit(tag, tag=True)
            self.thinking = not self.thinking
            if self.hide and self.thinking:
                self.console.print("[dim](thinking…)[/dim]", end="")
            text = text[at + len(tag) :]

    def _emit(self, text: str, tag: bool = False) -> None:
        if not text or (self.hide and (self.thinking or tag)):
            return
        self.console.print(text, style="dim" if self.thinking or tag else None, end="", markup=False,
                           highlight=False, soft_wrap=True)

    def close(self) -> None:
        self._emit(self.pending)
        self.pending = ""
        self.console.print()


def _partial_tag_suffix(text: str, tag: str) -> int:
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from deepscaler.inference import LLM, SamplingParams
    from deepscaler.serve.streaming import TextStream

    quiet_libraries(args.verbose)  # the conversation opens at once, not under a screen of vLLM's start-up log
    try:
        params = SamplingParams(temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens)
        llm = LLM(model=args.model, revision=args.revision, engine=args.engine,
                  num_threads=args.threads)
    except (FileNotFoundError, RuntimeError, ValueError, OSError) as error:
        raise UsageError(str(error)) from None
    console = Console(highlight=False)
    tokenizer = llm.get_tokenizer()
    streams = "on_token" in inspect.signature(llm.engine.generate).parameters
    console.print(f"[bold]{args.model}[/bold] ({llm.engine.name} engine). /reset starts over, /exit or Ctrl-D quits.")
    history = [{"role": "system", "content": args.system}] if args.system else []
    while True:
        try:
            line = console.input("[bold green]> [/bold green]") if sys.stdin.isatty() else input()
        except (EOFError, KeyboardInterrupt):
            break
        if line.strip() in ("/exit", "/quit"):
            break
        if line.strip() == "/reset":
            history = history[:1] if args.system else []
            continue
        if not line.strip():
            continue
        history.append({"role": "user", "content": line})
        text = tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        printer, stream = ThinkPrinter(console, args.hide_thinking), TextStream(tokenizer)
        options = {}
        if streams:
            options["on_token"] = lambda _request, _index, token, p=printer, s=stream: p.feed(s.push(token))
        try:
            output = llm.engine.generate([ids], [params], **options)[0][0]
        except ValueError as error:  # e.g. the conversation outgrew the context
            console.print(f"[red]{error}[/red]")
            history.pop()
            continue
        printer.feed(stream.finish(output.text) if streams else output.text)
        printer.close()
        history.append({"role": "assistant", "content": output.text})
    llm.close()
    return 0
