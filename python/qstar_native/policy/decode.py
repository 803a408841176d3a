"""The decode loop: the K samples of every node of a batch, decoded together.

Rows are the distinct sampled sequences. A node starts as one row carrying all its samples; a
step in which a row's samples draw different tokens splits it (the new row starts as a copy of
its parent's KV, one row copy, no reindexing of the others), so identical prefixes of sibling
samples are computed once and identical samples come out as one step with a count. A row ends
at the first token whose text contains the step delimiter, at EOS, at a stop string, or at
``max_step_tokens``; its last token is then fed once more, so the forward that computes the
child's KV also gives the hidden state at its last token (what a Q-value head reads), and the row
retires. A retired row's slot is refilled from the end, so live rows stay a prefix of the buffer
and each forward runs only them.

Per step, on the device: one forward of the live rows, the draws of all their samples
(:func:`.sampling.draw`), the log-probabilities of the drawn tokens; then one transfer of
``[rows, samples]`` tokens and log-probabilities to the host, where rows are split, ended and
retired with numpy over all rows at once. Python loops only over rows that split (rare at low
temperature) and rows the calculator takes over (see :mod:`.calculator`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .attention import DecodeLayout
from .sampling import draw, uniforms
from .step_text import FINISH

if TYPE_CHECKING:
    from .hf import HFPolicy, _Prefill

_DELIM, _EOS, _STOP, _LENGTH = range(4)


@dataclass
class Retired:
    """One finished row: a candidate step of node ``node``."""

    node: int
    first_sample: int  # orders a node's candidates independently of rows and batch
    tokens: np.ndarray
    count: int
    logprob: float
    finish: int
    hidden: torch.Tensor
    kv_handle: int = -1


@dataclass
class _Rows:
    """Host-side state of the rows (row r is live for r < n)."""

    node: np.ndarray  # [R] int64
    samples: np.ndarray  # [R, m] int64 sample ids, -1 padded
    toks: np.ndarray  # [R, T] int32 step tokens so far
    length: np.ndarray  # [R] int64 tokens in the step so far
    pos: np.ndarray  # [R] int64 position id of the next fed token
    logprob: np.ndarray  # [R] float64
    finish: np.ndarray  # [R] int8, -1 while running
    force: list = field(default_factory=list)  # [R] queued forced tokens (calculator), or None
    n: int = 0

    FIELDS = ("node", "samples", "toks", "length", "pos", "logprob", "finish")

    def grow(self, rows: int) -> None:
        if rows <= len(self.node):
            return
        cap = max(rows, 2 * len(self.node))
        for name in self.FIELDS:
            old = getattr(self, name)
            new = np.zeros((cap, *old.shape[1:]), old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)
        self.force += [None] * (cap - len(self.force))

    def copy(self, src: np.ndarray, dst: np.ndarray) -> None:
        for name in self.FIELDS:
            a = getattr(self, name)
            a[dst] = a[src]
        for s, d in zip(src.tolist(), dst.tolist()):
            self.force[d] = None if self.force[s] is None else list(self.force[s])


class Decoder:
    """Decodes one prefilled batch (see the module docstring); :meth:`run` returns the retired
    rows, per node, in sample order."""

    def __init__(self, policy: "HFPolicy", st: "_Prefill") -> None:
        self.p, self.st = policy, st
        n, m = len(st.seqs), int(st.k.max()) if len(st.k) else 1
        self.max_len = policy.max_step_tokens
        samples = np.where(np.arange(m)[None, :] < st.k[:, None], np.arange(m)[None, :], -1)
        self.rows = _Rows(
            node=np.arange(n, dtype=np.int64), samples=samples.astype(np.int64), toks=np.zeros((n, self.max_len), np.int32),
            length=np.zeros(n, np.int64), pos=np.array([len(s) for s in st.seqs], np.int64), logprob=np.zeros(n),
            finish=np.full(n, -1, np.int8), force=[None] * n, n=n,
        )  # fmt: skip
        self.work = policy.work
        self.work.phase = "decode"
        w = self.work
        self.node_bias = torch.zeros(n, w.node_length, device=w.device).masked_fill_(w.node_mask[:n, : w.node_length] == 0, float("-inf"))
        self.generated = np.zeros(n, np.int64)
        self.forwarded = np.zeros(n, np.int64)
        self.retired: list[Retired] = []
        self.temperature = torch.as_tensor(st.temperature, dtype=torch.float32, device=policy.runner.device)

    @torch.inference_mode()
    def run(self) -> list[Retired]:
        logits, r = self.st.logits, self.rows
        done = np.zeros(0, np.int64)
        while True:
            active = np.flatnonzero(r.finish[: r.n] < 0)
            if len(active):
                self._sample(active, logits[torch.as_tensor(active, device=logits.device)])
            self._compact(done)
            if r.n == 0:
                break
            logits, hidden = self._forward()
            done = np.flatnonzero(r.finish[: r.n] >= 0)  # their last token was fed just now
            if len(done):
                self._retire(done, hidden)
        self.retired.sort(key=lambda c: (c.node, c.first_sample))
        return self.retired

    # ---- one step -------------------------------------------------------------------------

    def _sample(self, active: np.ndarray, logits: torch.Tensor) -> None:
        r, p = self.rows, self.p
        samples = r.samples[active]
        valid = samples >= 0
        t = np.broadcast_to(r.length[active][:, None], samples.shape)
        seeds = self.st.node_seeds[r.node[active]]
        u = uniforms(np.broadcast_to(seeds[:, None], samples.shape), np.maximum(samples, 0), t)
        dev = logits.device
        temp = self.temperature[torch.as_tensor(r.node[active], device=self.temperature.device)].to(dev)
        greedy_nodes = self.st.greedy_first
        greedy_first = None
        if greedy_nodes is not None and greedy_nodes.any():
            greedy_first = torch.as_tensor((samples == 0) & greedy_nodes[r.node[active]][:, None], device=dev)
        tok = draw(logits, temp, p.top_p, torch.as_tensor(u, dtype=torch.float64, device=dev), min_p=p.min_p, greedy_samples=greedy_first)
        forced = [i for i, a in enumerate(active.tolist()) if r.force[a]]
        if forced:
            f = torch.as_tensor([r.force[active[i]].pop(0) for i in forced], device=dev)
            tok = tok.contiguous()  # greedy draws may be an expanded view
            tok[torch.as_tensor(forced, device=dev)] = f[:, None]
        lp = torch.log_softmax(logits.float(), -1).gather(1, tok)
        host = torch.stack([tok.double(), lp.double()]).cpu().numpy()  # the step's one device->host transfer
        tok_h, lp_h = host[0].astype(np.int64), host[1]
        first = tok_h[:, 0]
        same = ((tok_h == first[:, None]) | ~valid).all(1)
        self._append(active[same], first[same], lp_h[same, 0])
        n_before = r.n
        for i in np.flatnonzero(~same).tolist():
            self._split(int(active[i]), tok_h[i], lp_h[i], valid[i])
        self._check_finish(np.concatenate([active, np.arange(n_before, r.n)]))

    def _append(self, rows: np.ndarray, tok: np.ndarray, lp: np.ndarray) -> None:
        r = self.rows
        r.toks[rows, r.length[rows]] = tok
        r.length[rows] += 1
        r.logprob[rows] += lp
        np.add.at(self.generated, r.node[rows], 1)

    def _split(self, row: int, tok: np.ndarray, lp: np.ndarray, valid: np.ndarray) -> None:
        """Row ``row``'s samples drew different tokens: the first group (by sample id) keeps the
        row, each other group gets a new row that starts as a copy of it."""
        r = self.rows
        ids = r.samples[row].copy()
        groups: dict[int, list[int]] = {}
        for j in np.flatnonzero(valid).tolist():
            groups.setdefault(int(tok[j]), []).append(j)
        parts = list(groups.items())
        new = np.arange(r.n, r.n + len(parts) - 1)
        r.grow(r.n + len(new))
        self.work.reserve_rows(r.n + len(new))
        src = np.full(len(new), row)
        r.copy(src, new)
        self.work.copy_rows(torch.as_tensor(src, device=self.work.device), torch.as_tensor(new, device=self.work.device))
        r.n += len(new)
        self.work.rows = r.n
        for target, (t, js) in zip([row, *new.tolist()], parts):
            kept = np.full(r.samples.shape[1], -1, np.int64)
            kept[: len(js)] = ids[js]
            r.samples[target] = kept
            self._append(np.array([target]), np.array([t]), np.array([lp[js[0]]]))

    def _check_finish(self, rows: np.ndarray) -> None:
        """Marks rows whose newest token ends the step (they are fed once more, then retired)."""
        if len(rows) == 0:
            return
        r, p = self.rows, self.p
        last = r.toks[rows, r.length[rows] - 1]
        fin = np.full(len(rows), -1, np.int8)
        fin[r.length[rows] >= self.max_len] = _LENGTH
        fin[r.pos[rows] + 1 >= p.context_length] = _LENGTH  # the next position would not fit
        rules = p.text
        fin[rules.is_delim[last]] = _DELIM
        fin[rules.is_eos[last]] = _EOS
        if rules.stop_strings:
            for i in np.flatnonzero(fin < 0).tolist():
                text = p.tokenizer.decode(r.toks[rows[i], : r.length[rows[i]]].tolist())
                if any(s in text for s in rules.stop_strings):
                    fin[i] = _STOP
        r.finish[rows] = fin
        if p.calculator is not None:  # only rows that just wrote "=" can be inside "<<expr="
            for i in np.flatnonzero((fin < 0) & rules.ends_eq[last]).tolist():
                row = int(rows[i])
                if not r.force[row]:
                    r.force[row] = p.calculator.force(p.tokenizer.decode(r.toks[row, : r.length[row]].tolist())) or None

    def _forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Feeds every live row's newest token: the step's one forward (attention in :mod:`.attention`)."""
        r, w, dev = self.rows, self.work, self.work.device
        n = r.n
        ids = torch.as_tensor(r.toks[np.arange(n), r.length[:n] - 1].astype(np.int64), device=dev)[:, None]
        pos = torch.as_tensor(r.pos[:n], device=dev)[:, None]
        node = r.node[:n]
        order = np.argsort(node, kind="stable")
        first = np.searchsorted(node[order], node[order])  # where each row's node starts in the sorted order
        slot = np.empty(n, np.int64)
        slot[order] = np.arange(n) - first
        layout = DecodeLayout(w, torch.as_tensor(node, device=dev), torch.as_tensor(slot, device=dev), int(slot.max()) + 1, self.node_bias)
        with layout:  # the 4-D mask is a placeholder: the decode attention builds its own
            logits, hidden = self.p.runner.run(ids, torch.zeros(n, 1, 1, 1, device=dev), pos, w.cache(), torch.arange(n, device=dev),
                                               torch.zeros(n, dtype=torch.long, device=dev))  # fmt: skip
        w.length += 1
        r.pos[:n] += 1
        np.add.at(self.forwarded, r.node[:n], 1)
        self.p.forward_calls += 1
        return logits, hidden

    def _retire(self, done: np.ndarray, hidden: torch.Tensor) -> None:
        """Rows whose last token was just fed: capture them and write their KV back (their slots
        are freed by the next :meth:`_compact`)."""
        r = self.rows
        dev = hidden.device
        hid = hidden[torch.as_tensor(done, device=dev)].detach().clone()
        batch = []
        for i, row in enumerate(done.tolist()):
            count = int((r.samples[row] >= 0).sum())
            first = int(r.samples[row][r.samples[row] >= 0].min())
            ret = Retired(int(r.node[row]), first, r.toks[row, : r.length[row]].copy(), count, float(r.logprob[row]),
                          int(r.finish[row]), hid[i])  # fmt: skip
            self.retired.append(ret)
            batch.append((row, ret))
        self.p._write_back(self.st, batch)

    def _compact(self, done: np.ndarray) -> None:
        """Frees the rows ``done``, refilling their slots from the end so live rows stay [0, n)."""
        if len(done) == 0:
            return
        r = self.rows
        keep = np.ones(r.n, np.bool_)
        keep[done] = False
        new_n = int(keep.sum())
        holes = np.flatnonzero(~keep[:new_n])
        movers = np.flatnonzero(keep[new_n:]) + new_n
        if len(holes):
            r.copy(movers, holes)
            self.work.copy_rows(torch.as_tensor(movers, device=self.work.device), torch.as_tensor(holes, device=self.work.device))
        r.n = new_n
        self.work.rows = new_n
