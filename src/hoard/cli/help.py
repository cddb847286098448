"""``hoard help [TOPIC]`` and ``hoard`` alone: Borg 1.4's help command.

In the ``cli`` layer, not ``commands``, because it prints the parser's own
help: ``hoard help`` is ``hoard -h``, ``hoard help COMMAND`` is ``hoard
COMMAND -h`` (``--usage-only``: without the long description,
``--epilog-only``: only that), and the topics are Borg's three, in hoard's
words. An unknown topic is an argparse error naming the commands and
topics there are (exit 2), as Borg's.
"""

from __future__ import annotations

import argparse
import copy
import sys

NAME = "help"
HELP = "Extra help"

PATTERNS = """\
Include and exclude patterns (create, extract, list, diff)

--exclude / -e PATTERN, --exclude-from FILE: leave out what matches.
--pattern PATTERN, --patterns-from FILE: include (+), exclude (-) or exclude
without descending (!) what matches; the first pattern that matches decides.
In a patterns file each line is one of:

    R ROOT          a path to back up (as a PATH argument; '-' is stdin)
    P STYLE         the default style for the lines that follow (fm, sh, ...)
    + PATTERN       include
    - PATTERN       exclude (directories below may still be included)
    ! PATTERN       exclude and do not descend
    # comment       ignored, as are empty lines

A pattern may start with its style:

    fm:  fnmatch (default for --exclude): * ? [seq]; '*' also matches '/',
         a pattern matches a path and everything below it
    sh:  shell style (default for --pattern): * and ? stop at '/', ** matches
         any number of directories
    re:  a Python regular expression, searched anywhere in the path
    pp:  a path prefix: the path and everything below it
    pf:  a path, exactly (looked up before all other patterns)

Paths are matched without their leading '/' (/home/u and home/u are the
same pattern). A trailing '/' on fm: and sh: patterns means the contents,
not the directory itself. --exclude-caches leaves out directories holding a
valid CACHEDIR.TAG, --exclude-if-present NAME directories holding NAME
(--keep-exclude-tags keeps those tag files), --exclude-nodump files and
directories flagged nodump.

Examples:

    hoard create -e '*.pyc' -e 'sh:home/*/.cache' REPO::a /home
    printf 'R /home\\n- home/*/junk\\n! re:^home/[^/]+/\\.cache$\\n' > pf
    hoard create --patterns-from pf REPO::a
"""

PLACEHOLDERS = """\
Placeholders

Archive names, repository URLs, -a / --glob-archives, --prefix, --comment
and --remote-path take these placeholders:

    {hostname}       this machine's short host name (BORG_HOSTNAME or
                     HOARD_HOSTNAME replaces it, also in the archive record)
    {fqdn}           its full name
    {reverse-fqdn}   the full name, reversed (com.example.host)
    {now}            the local date and time, ISO 8601 by default; a strftime
                     format may follow a colon: {now:%Y-%m-%d_%H:%M:%S}
    {utcnow}         the same in UTC
    {unixtime}       seconds since 1970
    {user}           the user running hoard (BORG_USERNAME or HOARD_USERNAME
                     replaces it, also in the archive record)
    {pid}            the process id
    {uuid4}          a random UUID
    {borgversion}    the Borg version hoard follows, e.g. 1.4.1; also
    {borgmajor}      1, {borgminor} 1.4 and {borgpatch} 1.4.1
    {hoardversion}   hoard's own version

Other fields take Python format specs ({pid:08d}). {{ and }} are literal
braces. In a systemd unit file write %% for each %, e.g. {now:%%Y-%%m-%%d}.

Examples:

    hoard create REPO::{hostname}-{user}-{utcnow} ~
    hoard prune -a '{hostname}-*' --keep-daily 7 REPO
"""

COMPRESSION = """\
Compression (create --compression / -C SPEC)

    none            stored as it is
    lz4             very fast, little gain
    zstd[,L]        level 1 to 22 (default 3); hoard's default is zstd,1
    zlib[,L]        level 0 to 9 (default 6)
    lzma[,L]        level 0 to 9 (default 6); slow, small
    auto,C[,L]      try lz4 first: data lz4 cannot get below 97 % of its size
                    is stored as it is, the rest is compressed with C[,L]
                    and the smaller of the two results kept

Every stored chunk says how it was compressed, so the setting can change from
one backup to the next and a repository can hold chunks of every kind.
Chunks already in the repository are not compressed again. Borg's
'obfuscate' is not supported: hoard pads nothing (a message says so).

Examples:

    hoard create -C zstd,6 REPO::a ~
    hoard create -C auto,lzma REPO::a ~
"""

TOPICS = {"compression": COMPRESSION, "patterns": PATTERNS, "placeholders": PLACEHOLDERS}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", nargs="?", metavar="TOPIC", help="a command or a help topic")
    parser.add_argument("--epilog-only", action="store_true", help="only a command's description")
    parser.add_argument("--usage-only", action="store_true", help="a command's options only")


def show(
    top: argparse.ArgumentParser,
    commands: dict[str, argparse.ArgumentParser],
    args: argparse.Namespace,
) -> None:
    """Borg's ``do_help``: the whole help, a topic, or one command's help."""
    topic = getattr(args, "topic", None)
    if not topic:
        top.print_help(sys.stdout)
    elif topic in TOPICS:
        sys.stdout.write(TOPICS[topic])
    elif topic in commands:
        _command_help(commands[topic], epilog_only=args.epilog_only, usage_only=args.usage_only)
    else:
        top.error(
            "\n".join(
                [
                    f"No help available on {topic}.",
                    "Try one of the following:",
                    f"    Commands: {', '.join(sorted(commands))}",
                    f"    Topics: {', '.join(sorted(TOPICS))}",
                ]
            )
        )
    sys.stdout.flush()


def _command_help(parser: argparse.ArgumentParser, *, epilog_only: bool, usage_only: bool) -> None:
    text = parser.format_help()  # fills in the command's options first (CommandParser)
    if epilog_only:
        sys.stdout.write((parser.description or "") + "\n")
        return
    if usage_only:  # the options without the long description (Borg's epilog)
        brief = copy.copy(parser)
        brief.description = None
        text = brief.format_help()
    sys.stdout.write(text)
