"""The stacks of every Trio task and every thread of this process, as plain text: what a
hung daemon is waiting on (``-expose-pprof``, ``<pprof-path>tasks``).

Taken in two steps.  :func:`snapshot` runs on the event loop, where the task tree may
be walked safely; it only records file names, line numbers and function names, so it
does no I/O and holds the loop for as long as the walk takes.  :func:`render` then
looks the source lines up (which reads files) and lays the text out; it runs in a
worker thread.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from dataclasses import dataclass, field

import trio

from .._version import __version__


@dataclass(slots=True)
class TaskStack:
    """One Trio task: its name, its await stack (outermost call first) and the tasks
    its nurseries run."""

    name: str
    frames: list[traceback.FrameSummary]
    #: True for the task that takes the snapshot (the request asking for it).
    current: bool = False
    children: list[TaskStack] = field(default_factory=list)


@dataclass(slots=True)
class ThreadStack:
    name: str
    ident: int
    daemon: bool
    frames: list[traceback.FrameSummary]
    #: The thread that runs the Trio loop (its work is the task tree).
    loop: bool = False


@dataclass(slots=True)
class Snapshot:
    pid: int
    root: TaskStack
    threads: list[ThreadStack]

    def count_tasks(self) -> int:
        pending = [self.root]
        count = 0
        while pending:
            task = pending.pop()
            count += 1
            pending.extend(task.children)
        return count


def snapshot() -> Snapshot:
    """The task tree and the threads' stacks now; call it from a Trio task."""
    current = trio.lowlevel.current_task()
    root = _task_stack(trio.lowlevel.current_root_task() or current, current)
    loop_thread = threading.get_ident()
    names = {thread.ident: thread for thread in threading.enumerate()}
    threads = []
    for ident, frame in sys._current_frames().items():
        thread = names.get(ident)
        frames = traceback.StackSummary.extract(traceback.walk_stack(frame), lookup_lines=False)
        frames.reverse()
        threads.append(
            ThreadStack(
                name=thread.name if thread is not None else f"thread {ident}",
                ident=ident,
                daemon=thread.daemon if thread is not None else False,
                frames=list(frames),
                loop=ident == loop_thread,
            )
        )
    threads.sort(key=lambda stack: (not stack.loop, stack.name))
    return Snapshot(os.getpid(), root, threads)


def _task_stack(task: trio.lowlevel.Task, current: trio.lowlevel.Task) -> TaskStack:
    frames = [
        traceback.FrameSummary(
            frame.f_code.co_filename, lineno, frame.f_code.co_qualname, lookup_line=False
        )
        for frame, lineno in task.iter_await_frames()
    ]
    stack = TaskStack(task.name, frames, current=task is current)
    for nursery in task.child_nurseries:
        stack.children.extend(_task_stack(child, current) for child in nursery.child_tasks)
    return stack


def render(taken: Snapshot) -> str:
    """The snapshot as text (reads the source lines: run it in a worker thread)."""
    lines = [
        f"tusd-trio {__version__}, process {taken.pid}: "
        f"{taken.count_tasks()} Trio tasks, {len(taken.threads)} threads",
        "",
        "Trio tasks (each under the task whose nursery runs it; innermost call last):",
        "",
    ]
    _render_task(taken.root, 0, lines)
    lines += ["", "Threads (innermost call last):", ""]
    for thread in taken.threads:
        role = " (runs the Trio loop: its work is the task tree above)" if thread.loop else ""
        kind = ", daemon" if thread.daemon else ""
        lines.append(f"thread {thread.name!r} (id {thread.ident}{kind}){role}")
        _render_frames(thread.frames, "    ", lines)
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _render_task(task: TaskStack, depth: int, lines: list[str]) -> None:
    indent = "    " * depth
    marker = " (this request)" if task.current else ""
    lines.append(f"{indent}task {task.name}{marker}")
    _render_frames(task.frames, indent + "  | ", lines)
    for child in task.children:
        _render_task(child, depth + 1, lines)


def _render_frames(frames: list[traceback.FrameSummary], indent: str, lines: list[str]) -> None:
    for frame in frames:
        lines.append(f"{indent}{frame.filename}:{frame.lineno} in {frame.name}")
        source = (frame.line or "").strip()
        if source:
            lines.append(f"{indent}    {source}")
