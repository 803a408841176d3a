"""Where a step ends and what its text is: the rules every policy shares, in-process or served.

A step ends at the first token whose text contains the step delimiter, at EOS, or where its text
first contains a stop string; a finished step is terminal at EOS, at a stop string, or when the
task's ``is_terminal(line)`` says so. ``line`` is the step's text preceded by what the state
already holds of its last line: tokenizers merge a newline with the next line's indentation, so a
step of code can start mid-line.

Example:
    >>> class Tok:  # a character-level tokenizer: id i is chr(i)
    ...     eos_token_id = 0
    ...     def decode(self, ids): return "".join(chr(i) for i in ids)
    >>> rules = StepText(Tok(), vocab_size=128)
    >>> rules.cut(np.array([ord(c) for c in "ab\\ncd"]))
    (3, 'delimiter')
    >>> rules.line_start(np.array([ord(c) for c in "x = 1\\n    y"]))
    '    y'
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .calculator import Calculator

FINISH = ("delimiter", "eos", "stop", "length")


class StepText:
    """The step rules of one tokenizer (see the module docstring); vocabulary tables are built on
    first use (one decode per token id)."""

    def __init__(self, tokenizer: Any, *, vocab_size: int, step_delimiter: str = "\n", stop_strings: Sequence[str] = (),
                 is_terminal: Callable[[str], bool] | None = None, eos_ids: Any = None) -> None:  # fmt: skip
        if not hasattr(tokenizer, "decode"):
            raise TypeError("tokenizer must have decode(list[int]) -> str (any Hugging Face tokenizer does)")
        if not step_delimiter:
            raise ValueError("step_delimiter must be a non-empty string, e.g. '\\n'")
        if is_terminal is not None and not callable(is_terminal):
            raise TypeError(f"is_terminal must be callable (line -> bool), got {type(is_terminal).__name__}")
        self.tokenizer, self.vocab_size, self.step_delimiter = tokenizer, int(vocab_size), step_delimiter
        self.stop_strings, self.is_terminal = tuple(stop_strings), is_terminal
        eos = getattr(tokenizer, "eos_token_id", None) if eos_ids is None else eos_ids
        self.eos_ids = frozenset([] if eos is None else [eos] if isinstance(eos, int) else eos)
        self._tables: tuple[np.ndarray, ...] | None = None

    def decode(self, ids: Any) -> str:
        """Token ids -> text, EOS left out (it ends a step; it is no part of the text)."""
        return str(self.tokenizer.decode([t for t in np.asarray(ids).tolist() if t not in self.eos_ids]))

    def _token_tables(self) -> tuple[np.ndarray, ...]:
        """Per vocabulary id: its text contains the delimiter; it is EOS; it ends with "=" (calculator)."""
        if self._tables is None:
            texts = []
            for i in range(self.vocab_size):
                try:
                    texts.append(str(self.tokenizer.decode([i])))
                except Exception:  # noqa: BLE001 - ids past the tokenizer's vocabulary (padded embeddings)
                    texts.append("")
            delim = np.fromiter((self.step_delimiter in t for t in texts), np.bool_, len(texts))
            eos = np.zeros(len(texts), np.bool_)
            eos[[e for e in self.eos_ids if 0 <= e < len(texts)]] = True
            self._tables = (delim, eos, Calculator.ends_eq(texts))
        return self._tables

    is_delim = property(lambda self: self._token_tables()[0])
    is_eos = property(lambda self: self._token_tables()[1])
    ends_eq = property(lambda self: self._token_tables()[2])

    def cut(self, tokens: np.ndarray) -> tuple[int, str]:
        """Where a sampled continuation's first step ends: ``(length, finish)``, finish one of
        :data:`FINISH` (``"length"`` when no rule ends it within ``tokens``). For tokens decoded
        elsewhere (a server): the same rule the in-process decoder applies token by token."""
        if len(tokens) and int(tokens.max()) >= self.vocab_size:
            raise ValueError(f"token id {int(tokens.max())} is outside the tokenizer's {self.vocab_size} ids; the server runs another vocabulary")
        ends = self.is_delim[tokens] | self.is_eos[tokens]
        stop = len(tokens)
        if self.stop_strings:  # the first token whose prefix text holds a stop string
            for i in range(len(tokens)):
                text = str(self.tokenizer.decode(tokens[: i + 1].tolist()))
                if any(s in text for s in self.stop_strings):
                    stop = i
                    break
        first = np.flatnonzero(ends)
        end = min(int(first[0]) if len(first) else len(tokens), stop)
        if end == len(tokens):
            return end, "length"
        if end == stop:
            return end + 1, "stop"
        return end + 1, "eos" if self.is_eos[tokens[end]] else "delimiter"

    def line_start(self, state: np.ndarray) -> str:
        """The text of ``state``'s last line so far: what follows its last step delimiter (looked
        for in the last 64 tokens; without one, those tokens' text)."""
        tail = state[-64:]
        delims = np.flatnonzero(self.is_delim[tail])
        if len(delims) == 0:
            return self.decode(tail)
        text = self.decode(tail[delims[-1] :])
        return text[text.rfind(self.step_delimiter) + len(self.step_delimiter) :]

    def terminal(self, finish: str, text: str, line_start: Callable[[], str]) -> bool:
        """A finished step ends the solution: EOS, a stop string, or ``is_terminal`` on its line
        (``line_start()`` is called only when that rule needs it)."""
        if finish in ("eos", "stop"):
            return True
        return self.is_terminal is not None and bool(self.is_terminal(line_start() + text))


class LineStarts:
    """``line_start`` of each state of a batch, computed on first use: ``starts[i]``."""

    def __init__(self, rules: StepText, states: Sequence[np.ndarray]) -> None:
        self.rules, self.states, self._done = rules, states, {}

    def __getitem__(self, i: int) -> str:
        if i not in self._done:
            self._done[i] = self.rules.line_start(self.states[i])
        return self._done[i]
