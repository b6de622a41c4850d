"""The ``herdcount`` command: one verb per stage.

``herdcount --help`` lists the verbs; ``herdcount VERB --help`` shows every option of one.
Each verb runs its module's ``main(argv)``, imported only when chosen, so the command line
answers at once and TensorFlow is imported by ``train`` alone. The Spark verbs start Spark
themselves (``local[*]`` unless ``--master`` or spark-submit says otherwise); the files in
``jobs/`` run the same functions under ``spark-submit`` for clusters.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import os
import sys


class HelpFormatter(argparse.HelpFormatter):
    """Every option's default in ``--help``, where its help does not already say it and the
    default means something (not a required option, a flag off, or None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        meaningless = default is None or default is False or default is argparse.SUPPRESS
        if "default" in text.lower() or action.required or meaningless:
            return text
        return f"{text} (default: %(default)s)" if action.option_strings else text


#: verb -> (module whose ``main(argv)`` runs it, one line of help), in pipeline order.
VERBS = {
    "synth": ("herdcount.commands.synth", "write a synthetic survey in the Kaggle layout, with its truth"),
    "dotstyle": ("herdcount.commands.dotstyle", "measure a survey's dots (size, colours) to write a scheme"),
    "extract": (
        "herdcount.commands.extract",
        "find the dots of training pairs: metadata, thumbnails (Spark)",
    ),
    "windows": (
        "herdcount.commands.windows",
        "cut training windows of the extracted photos into shards (Spark)",
    ),
    "train": ("herdcount.commands.train", "train a density model or a patch classifier (TensorFlow)"),
    "count": ("herdcount.commands.count", "count the animals of every test photo into a submission (Spark)"),
    "unique": (
        "herdcount.commands.unique",
        "count each animal once across overlapping frames: register, link sightings (Spark)",
    ),
    "review": (
        "herdcount.commands.review",
        "check and correct a count's animals in the browser; export the corrections",
    ),
    "score": ("herdcount.commands.score", "score a submission against the truth: RMSE per class"),
    "report": ("herdcount.commands.report", "one HTML page of a survey's extraction, training and counts"),
    "manifest": ("herdcount.commands.manifest", "list and fingerprint an image collection (Spark)"),
    "clean": ("herdcount.commands.clean", "flag duplicates, unreadable, dark and blurred photos"),
    "split": ("herdcount.commands.split", "split a manifest into train/validation/test without leaks"),
    "lineage": ("herdcount.commands.lineage", "print the chain of runs behind an output"),
}


def usage() -> str:
    """The text of ``herdcount --help``."""
    width = max(map(len, VERBS))
    lines = [
        "usage: herdcount [-v] VERB [options]   (herdcount VERB --help for the options of one)",
        "",
        "Spark-parallel counting of animals in aerial survey photos. Quiet by default:",
        "-v shows what Spark and TensorFlow say too.",
        "",
        "verbs:",
    ]
    lines += [f"  {verb:<{width}}  {line}" for verb, (_, line) in VERBS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run ``herdcount VERB ...``; returns the verb's exit code (2 for an unknown verb)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-v", "--verbose"):
        # Seen by this process, Spark's JVM and its workers alike.
        os.environ["HERDCOUNT_VERBOSE"] = "1"
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"herdcount: unknown verb {verb!r}; expected one of {', '.join(VERBS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(VERBS[verb][0])
    sys.argv[0] = f"herdcount {verb}"
    return int(module.main(rest) or 0)


def verb_help(verb: str, columns: int = 100) -> str:
    """The text of ``herdcount VERB --help``, wrapped at ``columns`` whatever the terminal.

    Raises
    ------
    ValueError
        For a verb that is not one of :data:`VERBS`.
    """
    if verb not in VERBS:
        raise ValueError(f"unknown verb {verb!r}; expected one of {', '.join(VERBS)}")
    before, program = os.environ.get("COLUMNS"), sys.argv[0]
    os.environ["COLUMNS"] = str(columns)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main([verb, "--help"])
    finally:
        sys.argv[0] = program
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before
    return out.getvalue()


def reference() -> str:
    """docs/cli.md: every verb's ``--help``, made from the parsers themselves so it cannot drift.

    ``make docs`` writes it; a test fails when the file and the parsers disagree.
    """
    parts = [
        "# Command-line reference",
        "",
        "Generated by `make docs` from the commands' own parsers (`herdcount VERB --help`);",
        "edit the help texts, not this file. A test fails when the two disagree.",
        "",
        "```text",
        usage(),
        "```",
    ]
    for verb in VERBS:
        parts += ["", f"## herdcount {verb}", "", "```text", verb_help(verb).rstrip("\n"), "```"]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    sys.exit(main())
